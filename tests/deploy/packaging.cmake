# Packaging tests (included by tests/deploy/CMakeLists.txt): the systemd units (verify, and their
# sandbox with real training under systemd), the container image and the Debian packages. Each is
# a script that exits 77 (skipped), naming the missing tool, when podman, debootstrap, dpkg-deb or
# systemd-analyze is not installed (or it is not run as root), and runs by hand as
#   bash tests/deploy/<script> BUILD_DIR     or   (cd build && ctest -R deploy --output-on-failure)
# The image and package tests need root and Debian's archive (the network), take minutes, and use
# the whole machine: RUN_SERIAL.
set(gut_deploy_dir ${CMAKE_CURRENT_LIST_DIR})

# systemd-analyze verify (and the offline security score) of both units in a staged install.
add_test(NAME deploy.systemd_verify
  COMMAND bash ${gut_deploy_dir}/systemd-verify.sh ${CMAKE_BINARY_DIR})
set_tests_properties(deploy.systemd_verify PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 120)

# deploy/container/build-image.sh, then the image: both --version, no -dev package, no compiler,
# uid 10001, size.
add_test(NAME deploy.container_image
  COMMAND bash ${gut_deploy_dir}/container-image.sh ${CMAKE_BINARY_DIR})
set_tests_properties(deploy.container_image PROPERTIES
  SKIP_RETURN_CODE 77 RUN_SERIAL TRUE
  # A first build compiles the daemons inside the image (about 20 minutes on 2 cores); later runs
  # reuse the layers and the build directory's cache mount.
  TIMEOUT 3600)

# cpack's two .debs installed with apt into a fresh Debian 12 minbase root, then a coordinator and
# two agents from the installed packages, started the way their units start them, on a short run.
add_test(NAME deploy.deb_fresh_root
  COMMAND bash ${gut_deploy_dir}/deb-fresh-root.sh ${CMAKE_BINARY_DIR})
set_tests_properties(deploy.deb_fresh_root PROPERTIES SKIP_RETURN_CODE 77 RUN_SERIAL TRUE TIMEOUT 900)

# The units' sandbox with LibTorch training under it: systemd booted in a podman container of the
# image (plus Debian's systemd), a coordinator and two agents as units, the coordinator killed
# mid-run and resumed by Restart=on-failure.
add_test(NAME deploy.systemd_sandbox
  COMMAND bash ${gut_deploy_dir}/systemd-sandbox.sh ${CMAKE_BINARY_DIR})
set_tests_properties(deploy.systemd_sandbox PROPERTIES
  SKIP_RETURN_CODE 77 RUN_SERIAL TRUE TIMEOUT 3600)
