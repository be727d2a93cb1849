#include "leafmail/relay/relay_settings.hpp"

#include "leafmail/net/tls_context.hpp"
#include "leafmail/relay/credentials.hpp"
#include "leafmail/relay/secret_command.hpp"
#include "leafmail/routes.hpp"

namespace leafmail::relay {

void check_relay_settings(const config& settings)
{
    const auto& relay = settings.relay;
    if (relay.smarthost.empty())
        throw config_error("'smarthost' is not set: leafmail-flush has nowhere to relay to");
    // RFC 4954 section 4: AUTH over a cleartext channel only when accepted explicitly.
    if (!relay.auth_user.empty() && relay.tls == smtp::client_tls::none &&
        !relay.auth_over_plaintext)
        throw config_error("'auth-user' with 'tls = none' would send the password in clear text; "
                           "use tls = starttls or tls, or set auth-over-plaintext = yes");
    if (relay.max_messages_per_connection == 0)
        throw config_error("'max-messages-per-connection' must be at least 1");
}

smtp::client_options client_options_for(const config& settings)
{
    const auto& relay = settings.relay;
    smtp::client_options o;
    o.helo = relay.helo.empty() ? settings.hostname : relay.helo;
    o.tls = relay.tls;
    o.auth_over_plaintext = relay.auth_over_plaintext;
    o.max_messages = relay.max_messages_per_connection;
    o.max_recipients_per_transaction = relay.max_recipients_per_transaction;
    o.hmac_md5 = net::hmac_md5;
    o.auth_mechanisms = relay.auth_mechanisms;
    if (!relay.auth_user.empty())
        o.auth = smtp::client_credentials{relay.auth_user,
                                          relay.auth_password_file.empty()
                                              ? std::string()
                                              : read_password_file(relay.auth_password_file),
                                          {}};
    return o;
}

std::vector<std::string> route_names(const config& settings, std::string_view only)
{
    if (!only.empty()) {
        if (!relay_of_route(settings, only))
            throw config_error("no route named '" + std::string(only) +
                               "': the routes are the [route NAME] sections and 'default'");
        return {std::string(only)};
    }
    std::vector<std::string> names;
    for (const auto& r : settings.routes)
        names.push_back(r.name);
    names.emplace_back(default_route_name);
    return names;
}

config settings_for_route(const config& settings, std::string_view name)
{
    config view = settings;
    view.routes.clear();
    if (const relay_settings* relay = relay_of_route(settings, name))
        view.relay = *relay;
    return view;
}

std::optional<std::string> fetch_command_secrets(const relay_settings& relay,
                                                 smtp::client_options& options)
{
    if (!options.auth)
        return std::nullopt;
    const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(relay.timeout);
    if (!relay.auth_password_command.empty()) {
        auto got =
            run_secret_command(relay.auth_password_command, timeout, "auth-password-command");
        if (!got.secret)
            return got.failure;
        options.auth->password = std::move(*got.secret);
    }
    if (!relay.auth_token_command.empty()) {
        auto got = run_secret_command(relay.auth_token_command, timeout, "auth-token-command");
        if (!got.secret)
            return got.failure;
        options.auth->token = std::move(*got.secret);
    }
    return std::nullopt;
}

net::relay_endpoint endpoint_for(const config& settings, bool verbose)
{
    const auto& relay = settings.relay;
    net::relay_endpoint e;
    e.host = relay.host();
    e.port = relay.port();
    e.tls_verify = relay.tls_verify;
    e.connect_timeout = relay.connect_timeout;
    e.timeout = relay.timeout;
    e.data_timeout = relay.data_timeout;
    e.verbose = verbose;
    return e;
}

net::asio::ssl::context tls_context_for(const config& settings)
{
    try {
        return net::make_client_tls_context(settings.relay.tls_verify, settings.relay.ca_file);
    } catch (const net::tls_setup_error& e) {
        throw config_error(e.what());
    }
}

queue_relay_options queue_options_for(const config& settings, std::function<std::int64_t()> now)
{
    queue_relay_options o;
    o.reporting_host = settings.hostname;
    o.relay_name = settings.relay.smarthost;
    o.rewrite_sender = settings.relay.rewrite_sender;
    o.rewrite_from = settings.relay.rewrite_from;
    o.local_hostname = settings.hostname;
    o.local_domain = settings.domain;
    o.remote_host = settings.relay.host();
    o.max_queue_age = settings.relay.max_queue_age;
    o.warn_after = settings.relay.warn_after;
    o.retry = {settings.relay.retry_min, settings.relay.retry_max};
    o.now = std::move(now);
    return o;
}

} // namespace leafmail::relay
