# The Debian package: `cpack -G DEB` in the build directory makes leafmail_<version>_<arch>.deb,
# the machine's MTA as Debian's MTAs are (Provides/Conflicts/Replaces mail-transport-agent).
# Its contents are the install component "deb", laid out for Debian whatever this build's
# CMAKE_INSTALL_PREFIX: EXCLUDE_FROM_ALL keeps them out of `cmake --install`, and cmake
# --install's own rules (install.cmake) stay out of the package. The maintainer scripts in
# contrib/debian/ create the user, the spool and the setgid statoverride (see postinst).
set(leafmail_deb_dir ${CMAKE_CURRENT_BINARY_DIR}/deb)
set(leafmail_debian ${PROJECT_SOURCE_DIR}/contrib/debian)
set(leafmail_deb_doc usr/share/doc/leafmail)
file(MAKE_DIRECTORY ${leafmail_deb_dir})

function(leafmail_deb_install)
  install(${ARGN} COMPONENT deb EXCLUDE_FROM_ALL)
endfunction()

leafmail_deb_install(TARGETS leafmaild leafmail-flush leafmail-list leafmail-sendmail
                     RUNTIME DESTINATION usr/sbin)

# sendmail, mailq and newaliases: relative links to the injector (it acts on its name).
file(CREATE_LINK leafmail-sendmail ${leafmail_deb_dir}/sendmail SYMBOLIC)
file(MAKE_DIRECTORY ${leafmail_deb_dir}/bin)
file(CREATE_LINK ../sbin/leafmail-sendmail ${leafmail_deb_dir}/bin/mailq SYMBOLIC)
file(CREATE_LINK ../sbin/leafmail-sendmail ${leafmail_deb_dir}/bin/newaliases SYMBOLIC)
leafmail_deb_install(FILES ${leafmail_deb_dir}/sendmail DESTINATION usr/sbin)
leafmail_deb_install(FILES ${leafmail_deb_dir}/bin/mailq ${leafmail_deb_dir}/bin/newaliases DESTINATION usr/bin)

# Man pages, compressed as Debian policy 12.3 wants (-n: no time stamp, reproducible).
foreach(page leafmaild.8 leafmail-flush.8 leafmail-list.8 leafmail-sendmail.8 leafmail.conf.5)
  string(REGEX REPLACE ".*\\.([0-9])$" "\\1" section ${page})
  execute_process(COMMAND gzip -9n -c ${leafmail_contrib}/man/${page}
                  OUTPUT_FILE ${leafmail_deb_dir}/${page}.gz COMMAND_ERROR_IS_FATAL ANY)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${leafmail_contrib}/man/${page})
  leafmail_deb_install(FILES ${leafmail_deb_dir}/${page}.gz DESTINATION usr/share/man/man${section})
endforeach()
# The links' own names lead to the injector's page.
foreach(name sendmail mailq newaliases)
  file(CREATE_LINK leafmail-sendmail.8.gz ${leafmail_deb_dir}/${name}.8.gz SYMBOLIC)
  leafmail_deb_install(FILES ${leafmail_deb_dir}/${name}.8.gz DESTINATION usr/share/man/man8)
endforeach()

# contrib/ already names the Debian paths (/usr/sbin, /var/spool/leafmail, /etc).
leafmail_deb_install(FILES ${leafmail_contrib}/systemd/leafmaild.service ${leafmail_contrib}/systemd/leafmaild.socket
                           ${leafmail_contrib}/systemd/leafmaild@.service
                           ${leafmail_contrib}/systemd/leafmail-flush.service
                           ${leafmail_contrib}/systemd/leafmail-flush.timer
                     DESTINATION lib/systemd/system)
leafmail_deb_install(FILES ${leafmail_contrib}/leafmail.conf DESTINATION etc)
leafmail_deb_install(PROGRAMS ${leafmail_contrib}/ppp/ip-up.d/leafmail DESTINATION etc/ppp/ip-up.d)
leafmail_deb_install(PROGRAMS ${leafmail_contrib}/NetworkManager/dispatcher.d/90-leafmail
                     DESTINATION etc/NetworkManager/dispatcher.d)
leafmail_deb_install(FILES ${leafmail_contrib}/cron.d/leafmail DESTINATION ${leafmail_deb_doc}/examples/cron.d)
leafmail_deb_install(FILES ${leafmail_contrib}/leafmail.conf DESTINATION ${leafmail_deb_doc}/examples)

# /usr/share/doc/leafmail: copyright and changelog, as every Debian package has them.
configure_file(${leafmail_debian}/changelog.in ${leafmail_deb_dir}/changelog @ONLY)
# A version without a Debian revision is a native package: changelog.gz, not changelog.Debian.gz.
execute_process(COMMAND gzip -9n -c ${leafmail_deb_dir}/changelog
                OUTPUT_FILE ${leafmail_deb_dir}/changelog.gz COMMAND_ERROR_IS_FATAL ANY)
leafmail_deb_install(FILES ${leafmail_debian}/copyright ${leafmail_deb_dir}/changelog.gz
                     DESTINATION ${leafmail_deb_doc})

# Files in /etc are conffiles: an upgrade never overwrites the administrator's edits.
file(WRITE ${leafmail_deb_dir}/conffiles
     "/etc/leafmail.conf\n/etc/ppp/ip-up.d/leafmail\n/etc/NetworkManager/dispatcher.d/90-leafmail\n")

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME leafmail)
set(CPACK_PACKAGE_VENDOR "leafmail")
set(CPACK_PACKAGE_CONTACT "leafmail maintainers <leafmail@example.org>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "store-and-forward mail transfer agent for intermittent links")
set(CPACK_PACKAGING_INSTALL_PREFIX /)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL deb)
set(CPACK_COMPONENTS_GROUPING ALL_COMPONENTS_IN_ONE)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_NAME leafmail)
set(CPACK_DEBIAN_PACKAGE_RELEASE "")
set(CPACK_DEBIAN_PACKAGE_SECTION mail)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# useradd, groupadd and userdel in the maintainer scripts; the rest is found by dpkg-shlibdeps.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "passwd")
set(CPACK_DEBIAN_PACKAGE_PROVIDES mail-transport-agent)
set(CPACK_DEBIAN_PACKAGE_CONFLICTS mail-transport-agent)
set(CPACK_DEBIAN_PACKAGE_REPLACES mail-transport-agent)
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "leafmail keeps local mail durably in a spool and relays it to a smarthost
(with STARTTLS and authentication) when the machine is online: a laptop, a
router on a metered link, a field box. It provides leafmaild (an SMTP receiver
on loopback), leafmail-sendmail (/usr/sbin/sendmail), leafmail-list (mailq)
and leafmail-flush, with systemd units and ppp and NetworkManager hooks.")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${leafmail_debian}/postinst ${leafmail_debian}/prerm ${leafmail_debian}/postrm
    ${leafmail_deb_dir}/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
