# Install rules (GNUInstallDirs): programs, man pages, the configuration example, the spool
# directories and the contrib/ units and scripts. The install model for unprivileged
# injection (leafmail-sendmail(8), INSTALL MODEL): leafmail-sendmail is setgid to the
# group LEAFMAIL_GROUP, the spool is owned by LEAFMAIL_USER:LEAFMAIL_GROUP with mode 2770.
# Ownership can only be set when installing as root and the group exists; otherwise the
# program is installed WITHOUT its setgid bit (a setgid binary of the wrong group would hand
# that group to every user) and a message says what to do.
option(LEAFMAIL_INSTALL_SENDMAIL_LINKS
       "Install sendmail (sbin), mailq and newaliases (bin) as links to leafmail-sendmail" OFF)
option(LEAFMAIL_INSTALL_SYSTEMD_UNITS "Install the systemd units of contrib/systemd" ON)
set(LEAFMAIL_USER leafmail CACHE STRING "User that owns the spool (and runs leafmaild and leafmail-flush)")
set(LEAFMAIL_GROUP leafmail CACHE STRING "Group of the spool and of the setgid leafmail-sendmail")
set(LEAFMAIL_SPOOL_DIR "${CMAKE_INSTALL_FULL_LOCALSTATEDIR}/spool/leafmail" CACHE PATH
    "Spool directory created by make install (the programs default to /var/spool/leafmail)")
set(LEAFMAIL_SYSTEMD_UNIT_DIR "${CMAKE_INSTALL_PREFIX}/lib/systemd/system" CACHE PATH
    "Where the systemd units go")

set(leafmail_contrib ${PROJECT_SOURCE_DIR}/contrib)
set(leafmail_examples ${CMAKE_INSTALL_DOCDIR}/examples)

# Programs: all four in sbin, beside each other (leafmail-sendmail -bp and -q run the
# programs installed next to it).
install(TARGETS leafmaild leafmail-flush leafmail-list leafmail-sendmail
        RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})

# Man pages, straight from their roff sources.
install(FILES ${leafmail_contrib}/man/leafmaild.8 ${leafmail_contrib}/man/leafmail-flush.8
              ${leafmail_contrib}/man/leafmail-list.8 ${leafmail_contrib}/man/leafmail-sendmail.8
        DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES ${leafmail_contrib}/man/leafmail.conf.5 DESTINATION ${CMAKE_INSTALL_MANDIR}/man5)

# Units and scripts name the programs by their installed path; contrib/ says /usr/sbin and
# /var/spool/leafmail, replaced here by what this build installs to.
function(leafmail_configure_contrib relative out_var)
  file(READ ${leafmail_contrib}/${relative} text)
  string(REPLACE "/usr/sbin/" "${CMAKE_INSTALL_FULL_SBINDIR}/" text "${text}")
  string(REPLACE "/var/spool/leafmail" "${LEAFMAIL_SPOOL_DIR}" text "${text}")
  string(REPLACE "User=leafmail" "User=${LEAFMAIL_USER}" text "${text}")
  string(REPLACE "Group=leafmail" "Group=${LEAFMAIL_GROUP}" text "${text}")
  set(out ${CMAKE_CURRENT_BINARY_DIR}/contrib/${relative})
  file(CONFIGURE OUTPUT ${out} CONTENT "${text}" @ONLY)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${leafmail_contrib}/${relative})
  set(${out_var} ${out} PARENT_SCOPE)
endfunction()

set(leafmail_units leafmaild.service leafmaild.socket leafmaild@.service
                   leafmail-flush.service leafmail-flush.timer leafmail-watch.service)
foreach(unit ${leafmail_units})
  leafmail_configure_contrib(systemd/${unit} configured)
  if(LEAFMAIL_INSTALL_SYSTEMD_UNITS)
    install(FILES ${configured} DESTINATION ${LEAFMAIL_SYSTEMD_UNIT_DIR})
  endif()
  install(FILES ${configured} DESTINATION ${leafmail_examples}/systemd)
endforeach()

# Scripts that act when a link comes up, and the cron line: examples to copy into /etc
# (installing them there would start flushing before a smarthost is configured).
set(leafmail_script_permissions OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                                WORLD_READ WORLD_EXECUTE)
leafmail_configure_contrib(ppp/ip-up.d/leafmail configured)
install(FILES ${configured} DESTINATION ${leafmail_examples}/ppp/ip-up.d PERMISSIONS ${leafmail_script_permissions})
leafmail_configure_contrib(NetworkManager/dispatcher.d/90-leafmail configured)
install(FILES ${configured} DESTINATION ${leafmail_examples}/NetworkManager/dispatcher.d
        PERMISSIONS ${leafmail_script_permissions})
leafmail_configure_contrib(cron.d/leafmail configured)
install(FILES ${configured} DESTINATION ${leafmail_examples}/cron.d)

# The configuration example: always among the examples; as the configuration itself only
# when there is none yet (make install never overwrites an administrator's file).
if(EXISTS ${leafmail_contrib}/leafmail.conf)
  install(FILES ${leafmail_contrib}/leafmail.conf DESTINATION ${leafmail_examples})
  install(CODE "
    set(conf \"\$ENV{DESTDIR}${CMAKE_INSTALL_FULL_SYSCONFDIR}/leafmail.conf\")
    if(EXISTS \"\${conf}\")
      message(STATUS \"Keeping: \${conf}\")
    else()
      # file(INSTALL) adds DESTDIR itself.
      file(INSTALL \"${leafmail_contrib}/leafmail.conf\"
           DESTINATION \"${CMAKE_INSTALL_FULL_SYSCONFDIR}\"
           FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
    endif()")
endif()

# The spool: group-writable, setgid directories (entries made by root, e.g. by an operator's
# leafmail-list --requeue, keep the spool's group and stay readable by the daemon).
install(DIRECTORY DESTINATION ${LEAFMAIL_SPOOL_DIR}
        DIRECTORY_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_WRITE GROUP_EXECUTE SETGID)
foreach(area tmp queue hold failed corrupt)
  install(DIRECTORY DESTINATION ${LEAFMAIL_SPOOL_DIR}/${area}
          DIRECTORY_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_WRITE GROUP_EXECUTE SETGID)
endforeach()

# Ownership and the setgid bit. LEAFMAIL_INSTALL_GROUP / LEAFMAIL_INSTALL_USER in the
# environment override the cached names at install time (the install test uses a scratch group).
install(CODE "
  set(group \"${LEAFMAIL_GROUP}\")
  set(user \"${LEAFMAIL_USER}\")
  if(DEFINED ENV{LEAFMAIL_INSTALL_GROUP})
    set(group \"\$ENV{LEAFMAIL_INSTALL_GROUP}\")
  endif()
  if(DEFINED ENV{LEAFMAIL_INSTALL_USER})
    set(user \"\$ENV{LEAFMAIL_INSTALL_USER}\")
  endif()
  set(sendmail \"\$ENV{DESTDIR}${CMAKE_INSTALL_FULL_SBINDIR}/leafmail-sendmail\")
  set(spool \"\$ENV{DESTDIR}${LEAFMAIL_SPOOL_DIR}\")
  execute_process(COMMAND id -u OUTPUT_VARIABLE uid OUTPUT_STRIP_TRAILING_WHITESPACE)
  execute_process(COMMAND getent group \"\${group}\" RESULT_VARIABLE no_group OUTPUT_QUIET)
  execute_process(COMMAND getent passwd \"\${user}\" RESULT_VARIABLE no_user OUTPUT_QUIET)
  if(uid STREQUAL \"0\" AND no_group EQUAL 0)
    set(owner root)
    if(no_user EQUAL 0)
      set(owner \"\${user}\")
    endif()
    execute_process(COMMAND chown -R \"\${owner}:\${group}\" \"\${spool}\" COMMAND_ERROR_IS_FATAL ANY)
    execute_process(COMMAND find \"\${spool}\" -type d -exec chmod 2770 {} + COMMAND_ERROR_IS_FATAL ANY)
    # chgrp clears the setgid bit (even for root), so the mode comes after it.
    execute_process(COMMAND chgrp \"\${group}\" \"\${sendmail}\" COMMAND_ERROR_IS_FATAL ANY)
    execute_process(COMMAND chmod 2755 \"\${sendmail}\" COMMAND_ERROR_IS_FATAL ANY)
    message(STATUS \"leafmail-sendmail: setgid \${group}; spool owned by \${owner}:\${group}\")
  else()
    execute_process(COMMAND chmod 0755 \"\${sendmail}\")
    message(WARNING \"leafmail-sendmail installed without its setgid group: \"
            \"needs root and the group '\${group}' (groupadd --system \${group}; \"
            \"useradd --system -g \${group} -d ${LEAFMAIL_SPOOL_DIR} -s /usr/sbin/nologin \${user}), \"
            \"then install again. Until then only root and members of the group can send mail.\")
  endif()
")

if(LEAFMAIL_INSTALL_SENDMAIL_LINKS)
  file(RELATIVE_PATH leafmail_from_bin ${CMAKE_INSTALL_FULL_BINDIR} ${CMAKE_INSTALL_FULL_SBINDIR}/leafmail-sendmail)
  install(CODE "
    file(MAKE_DIRECTORY \"\$ENV{DESTDIR}${CMAKE_INSTALL_FULL_BINDIR}\")
    file(CREATE_LINK leafmail-sendmail \"\$ENV{DESTDIR}${CMAKE_INSTALL_FULL_SBINDIR}/sendmail\" SYMBOLIC)
    file(CREATE_LINK \"${leafmail_from_bin}\" \"\$ENV{DESTDIR}${CMAKE_INSTALL_FULL_BINDIR}/mailq\" SYMBOLIC)
    file(CREATE_LINK \"${leafmail_from_bin}\" \"\$ENV{DESTDIR}${CMAKE_INSTALL_FULL_BINDIR}/newaliases\" SYMBOLIC)
  ")
endif()
