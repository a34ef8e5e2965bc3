# Kubernetes manifests (deploy/k8s), included by tests/deploy/CMakeLists.txt. Each test skips
# itself (exit 77) with a message where its tools are missing.
#
# deploy.k8s_structure: renders every overlay with kubectl's kustomize and checks the wiring the
#   API server would not (selectors, ports, probes, flags against the binaries' --help, volumes,
#   resources, the manifest and the TLS Secret); a few seconds.
# deploy.k8s_podman_e2e: builds the image, runs the ci-4 overlay as Pods with podman kube play and
#   compares the agents' final parameters with gut-sim's; minutes, root only.
if(EXISTS /usr/bin/python3)
  add_test(NAME deploy.k8s_structure
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/k8s_structure_test.py
            --source-dir ${CMAKE_SOURCE_DIR}
            --agentd $<TARGET_FILE:gut-agentd> --coordinator $<TARGET_FILE:gut-coordinator>)
else()
  add_test(NAME deploy.k8s_structure
    COMMAND sh -c "echo 'skipped: /usr/bin/python3 (Debian python3 with python3-yaml) is not installed'; exit 77")
endif()
set_tests_properties(deploy.k8s_structure PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)

add_test(NAME deploy.k8s_podman_e2e
  COMMAND ${CMAKE_CURRENT_LIST_DIR}/k8s_podman_e2e.sh
          --source-dir ${CMAKE_SOURCE_DIR} --build-dir ${CMAKE_BINARY_DIR} --sim $<TARGET_FILE:gut-sim>)
# After deploy.container_image (packaging.cmake) when both run: the image build is then a cache hit.
set_tests_properties(deploy.k8s_podman_e2e PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 900 RUN_SERIAL TRUE
  DEPENDS deploy.container_image)
