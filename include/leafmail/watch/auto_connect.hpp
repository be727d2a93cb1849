#pragma once
// `auto-connect`: whether the watcher may open a connection on its own. always = whenever mail
// is due and a default route exists; on_link = only after a link-up event or a kick, for
// metered and dial-on-demand links where any packet to the smarthost dials.
#include <optional>
#include <string_view>

namespace leafmail::watch {

enum class auto_connect { always, on_link };
[[nodiscard]] std::string_view to_string(auto_connect mode);
[[nodiscard]] std::optional<auto_connect> auto_connect_from_string(std::string_view text);

} // namespace leafmail::watch
