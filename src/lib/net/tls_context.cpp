#include "leafmail/net/tls_context.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

namespace leafmail::net {

namespace {

bool is_ip_literal(const std::string& host)
{
    boost::system::error_code ec;
    asio::ip::make_address(host, ec);
    return !ec;
}

// OpenSSL's reason ("no certificate or crl found") where Asio has only "asio.ssl error".
std::string ssl_reason(const boost::system::error_code& ec)
{
    const char* reason = ::ERR_reason_error_string(static_cast<unsigned long>(ec.value()));
    return reason ? reason : ec.message();
}

} // namespace

asio::ssl::context make_client_tls_context(bool verify, const std::filesystem::path& ca_file)
{
    asio::ssl::context context(asio::ssl::context::tls_client);
    // SSLv3, TLS 1.0 and 1.1 are deprecated (RFC 8996).
    SSL_CTX_set_min_proto_version(context.native_handle(), TLS1_2_VERSION);
    if (!verify) {
        context.set_verify_mode(asio::ssl::verify_none);
        return context;
    }
    boost::system::error_code ec;
    context.set_default_verify_paths(ec);
    if (ec)
        throw tls_setup_error("cannot load the system CA store: " + ec.message());
    if (!ca_file.empty()) {
        // OpenSSL says only "asio.ssl error" for a file it cannot open: ask the system first,
        // so that a missing or unreadable ca-file is named as such.
        const int fd = ::open(ca_file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
            throw tls_setup_error("cannot read ca-file " + ca_file.string() + ": " +
                                  std::strerror(errno));
        struct stat st {};
        const bool is_file = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
        ::close(fd);
        if (!is_file)
            throw tls_setup_error("cannot read ca-file " + ca_file.string() +
                                  ": not a regular file");
        context.load_verify_file(ca_file.string(), ec);
        if (ec)
            throw tls_setup_error("ca-file " + ca_file.string() +
                                  " holds no usable PEM certificate (" + ssl_reason(ec) + ")");
    }
    context.set_verify_mode(asio::ssl::verify_peer);
    return context;
}

void prepare_client_tls(asio::ssl::stream<asio::ip::tcp::socket>& stream, const std::string& host,
                        bool verify)
{
    SSL* ssl = stream.native_handle();
    bool ip = is_ip_literal(host);
    // RFC 6066 section 3: "Literal IPv4 and IPv6 addresses are not permitted in HostName".
    if (!ip)
        SSL_set_tlsext_host_name(ssl, host.c_str());
    if (!verify)
        return;
    // The name check is part of chain verification, so a wrong name fails the handshake.
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (ip)
        X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
    else
        X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
}

std::string tls_verify_error(asio::ssl::stream<asio::ip::tcp::socket>& stream)
{
    long result = SSL_get_verify_result(stream.native_handle());
    if (result == X509_V_OK)
        return {};
    return X509_verify_cert_error_string(result);
}

std::string hmac_md5(std::string_view key, std::string_view message)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    HMAC(EVP_md5(), key.data(), static_cast<int>(key.size()),
         reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest, &length);
    return std::string(reinterpret_cast<const char*>(digest), length);
}

} // namespace leafmail::net
