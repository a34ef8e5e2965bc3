# Install rules and Debian packages (included by the top-level CMakeLists.txt).
#
#   (cd build && cpack -G DEB)          or   cmake --build build --target package
#       builds gut-agentd and gut-coordinator (only them) and writes build/gut-agentd_<v>-1_amd64.deb
#       and build/gut-coordinator_<v>-1_amd64.deb
#   cmake --install build --prefix /usr [--component agentd|coordinator]   (after a build)
#
# Two components, one package each:
#   gut-agentd       /usr/bin/gut-agentd, /usr/lib/systemd/system/gut-agentd.service,
#                    /etc/gut/agentd.env (conffile)
#   gut-coordinator  /usr/bin/gut-coordinator, /usr/libexec/gut/coordinator-start,
#                    /usr/lib/systemd/system/gut-coordinator.service, /etc/gut/coordinator.env
#                    (conffile), the example manifests in /usr/share/gut/examples
# plus docs/operations/edge.md in /usr/share/doc/<package>/. Their maintainer scripts
# (deploy/systemd/debian/*.in) create the system user gut and /var/lib/gut. The units name
# /usr/bin and /usr/libexec: install with --prefix /usr (the packages' prefix) to use them.
#
# Depends: computed by dpkg-shlibdeps from the binaries (dpkg-dev and file must be installed);
# without them the list below, measured on Debian 12, is used instead.
include(GNUInstallDirs)

# cpack (and `make install`) must not build `all` first: the packages hold the two daemons only,
# and a test or benchmark that does not compile must not stop them. cpack builds the daemons
# itself (CPACK_INSTALL_SCRIPTS below); `cmake --install` installs what is built.
if(NOT DEFINED CMAKE_SKIP_INSTALL_ALL_DEPENDENCY)
  set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)
endif()

set(GUT_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING
    "systemd unit directory, relative to the install prefix")

install(TARGETS gut-agentd RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT agentd)
install(FILES ${CMAKE_SOURCE_DIR}/deploy/systemd/gut-agentd.service
        DESTINATION ${GUT_SYSTEMD_UNIT_DIR} COMPONENT agentd)
# Absolute: /etc/gut even with --prefix /usr (a staged install puts it under DESTDIR).
install(FILES ${CMAKE_SOURCE_DIR}/deploy/systemd/agentd.env DESTINATION /etc/gut COMPONENT agentd)
install(FILES ${CMAKE_SOURCE_DIR}/docs/operations/edge.md
        DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/gut-agentd COMPONENT agentd)

install(TARGETS gut-coordinator RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT coordinator)
install(PROGRAMS ${CMAKE_SOURCE_DIR}/deploy/systemd/coordinator-start
        DESTINATION ${CMAKE_INSTALL_LIBEXECDIR}/gut COMPONENT coordinator)
install(FILES ${CMAKE_SOURCE_DIR}/deploy/systemd/gut-coordinator.service
        DESTINATION ${GUT_SYSTEMD_UNIT_DIR} COMPONENT coordinator)
install(FILES ${CMAKE_SOURCE_DIR}/deploy/systemd/coordinator.env DESTINATION /etc/gut COMPONENT coordinator)
install(DIRECTORY ${CMAKE_SOURCE_DIR}/deploy/examples/
        DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/gut/examples COMPONENT coordinator
        FILES_MATCHING PATTERN "*.yaml")
install(FILES ${CMAKE_SOURCE_DIR}/docs/operations/edge.md
        DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/gut-coordinator COMPONENT coordinator)

# ---- CPack: two .deb packages -------------------------------------------------------------------
set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "gut")
set(CPACK_PACKAGE_VENDOR "gut")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "decentralised learning with Global Update Tracking")
set(GUT_PACKAGE_MAINTAINER "gut maintainers <gut@localhost>" CACHE STRING "Maintainer field of the .debs")
set(CPACK_PACKAGE_CONTACT "${GUT_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_COMPONENTS_ALL agentd coordinator)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # gut-agentd_0.1.0-1_amd64.deb
set(GUT_PACKAGE_RELEASE "1" CACHE STRING "Debian revision of the .debs")
set(CPACK_DEBIAN_PACKAGE_RELEASE "${GUT_PACKAGE_RELEASE}")
set(CPACK_DEBIAN_PACKAGE_SECTION "science")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
set(CPACK_DEBIAN_COMPRESSION_TYPE "xz")
# Scripts 0755, conffiles 0644, whatever the source tree's modes.
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)

find_program(GUT_DPKG_SHLIBDEPS dpkg-shlibdeps)
find_program(GUT_FILE_PROGRAM file)
if(GUT_DPKG_SHLIBDEPS AND GUT_FILE_PROGRAM)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
  set(gut_agentd_libs "")
  set(gut_coordinator_libs "")
else()
  message(STATUS "packaging: dpkg-shlibdeps or file missing (apt-get install dpkg-dev file); "
                 "the .debs get the fixed Debian 12 Depends list")
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS OFF)
  # What dpkg-shlibdeps gives on Debian 12 (bookworm) for the two binaries.
  set(gut_common_libs "libabsl20220623 (>= 0~20220623.0-1), libc6 (>= 2.34), libfmt9 (>= 9.1.0+ds1), \
libgcc-s1 (>= 3.0), libgrpc++1.51 (>= 1.51.1), libgrpc29 (>= 1.51.1), libjpeg62-turbo (>= 1.3.1), \
libprometheus-cpp-core1.0 (>= 1.0.1), libprotobuf32 (>= 3.21.12), libspdlog1.10-fmt9, libssl3 (>= 3.0.0), \
libstdc++6 (>= 12), libyaml-cpp0.7 (>= 0.7.0), libzstd1 (>= 1.5.2), zlib1g (>= 1:1.1.4)")
  set(gut_agentd_libs ", ${gut_common_libs}, libtorch1.13 (>= 1.13.1+dfsg)")
  set(gut_coordinator_libs ", ${gut_common_libs}")
endif()

# passwd: useradd/groupadd in postinst (priority required, but not Essential).
set(CPACK_DEBIAN_AGENTD_PACKAGE_NAME "gut-agentd")
set(CPACK_DEBIAN_AGENTD_PACKAGE_DEPENDS "passwd${gut_agentd_libs}")
# Debian's libtorch runs GEMM on the reference BLAS unless an optimised libblas.so.3 is there.
set(CPACK_DEBIAN_AGENTD_PACKAGE_RECOMMENDS "libopenblas0-openmp")
set(CPACK_DEBIAN_AGENTD_PACKAGE_SUGGESTS "dataset-fashion-mnist, gut-coordinator")
set(CPACK_COMPONENT_AGENTD_DESCRIPTION
    "gut agent daemon (decentralised learning)\n\
gut-agentd is one agent of a gut run: it joins the gut-coordinator, trains a\n\
model on its own data with LibTorch and gossips compressed model updates with\n\
its graph neighbours over mutual-TLS gRPC streams (Global Update Tracking,\n\
QG-GUTm and baselines). Includes a hardened systemd unit configured through\n\
/etc/gut/agentd.env.")

set(CPACK_DEBIAN_COORDINATOR_PACKAGE_NAME "gut-coordinator")
set(CPACK_DEBIAN_COORDINATOR_PACKAGE_DEPENDS "passwd${gut_coordinator_libs}")
set(CPACK_DEBIAN_COORDINATOR_PACKAGE_SUGGESTS "gut-agentd")
set(CPACK_COMPONENT_COORDINATOR_DESCRIPTION
    "gut coordinator daemon (decentralised learning)\n\
gut-coordinator bootstraps a gut run from a YAML manifest (ranks, neighbours,\n\
hyperparameters), watches over it and collects the agents' metrics; it never\n\
sees model parameters. Includes the example manifests and a hardened systemd\n\
unit configured through /etc/gut/coordinator.env.")

# Maintainer scripts and conffiles, one set per package.
foreach(comp agentd coordinator)
  string(TOUPPER "${comp}" COMP)
  set(PKG "gut-${comp}")
  set(ENVFILE "${comp}.env")
  if(comp STREQUAL "agentd")
    set(STATEDIR "/var/lib/gut/agent")
    set(OTHER "gut-coordinator")
  else()
    set(STATEDIR "/var/lib/gut/coordinator")
    set(OTHER "gut-agentd")
  endif()
  set(dir "${CMAKE_BINARY_DIR}/packaging/${PKG}")
  foreach(script postinst prerm postrm)
    configure_file(${CMAKE_SOURCE_DIR}/deploy/systemd/debian/${script}.in ${dir}/${script} @ONLY
                   FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                                    WORLD_READ WORLD_EXECUTE)
  endforeach()
  file(WRITE ${dir}/conffiles "/etc/gut/${ENVFILE}\n")
  set(CPACK_DEBIAN_${COMP}_PACKAGE_CONTROL_EXTRA
      "${dir}/conffiles;${dir}/postinst;${dir}/prerm;${dir}/postrm")
endforeach()

# cpack: build gut-agentd and gut-coordinator (and nothing else) before installing them.
file(WRITE ${CMAKE_BINARY_DIR}/packaging/build-daemons.cmake
  "# Generated by cmake/packaging.cmake: run by cpack (CPACK_INSTALL_SCRIPTS) before it installs.\n"
  "execute_process(COMMAND \"${CMAKE_COMMAND}\" --build \"${CMAKE_BINARY_DIR}\" --target gut-agentd gut-coordinator\n"
  "                COMMAND_ERROR_IS_FATAL ANY)\n")
set(CPACK_INSTALL_SCRIPTS ${CMAKE_BINARY_DIR}/packaging/build-daemons.cmake)

include(CPack)
