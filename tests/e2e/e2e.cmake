# End-to-end tests of the vsoc command on shipped samples, generated traffic and planted
# mistakes (label e2e), and on the real captures in ../shared/data/can (label shared-data;
# reported as skipped, not passed, where that directory is absent).
set(VSOC_E2E ${CMAKE_CURRENT_LIST_DIR}/cli.sh)
set(VSOC_E2E_ENV "VSOC=$<TARGET_FILE:vsoc>;VSOC_GEN=$<TARGET_FILE:vsoc-gen>;VSOC_AGENT=$<TARGET_FILE:vsoc-agent>;VSOC_SRC=${CMAKE_SOURCE_DIR}")
foreach(t help demo determinism stdin malformed lint-planted lint-pack rules-test generated-attacks
          multi-file baseline-learn agent-verify keygen)
  add_test(NAME e2e.${t} COMMAND bash ${VSOC_E2E} ${t})
  set_tests_properties(e2e.${t} PROPERTIES LABELS e2e ENVIRONMENT "${VSOC_E2E_ENV}")
endforeach()
foreach(t shared-dos shared-fuzz shared-normal shared-request-overload shared-labelled
          shared-garbage shared-baseline)
  add_test(NAME e2e.${t} COMMAND bash ${VSOC_E2E} ${t})
  set_tests_properties(e2e.${t} PROPERTIES LABELS shared-data ENVIRONMENT "${VSOC_E2E_ENV}"
                       SKIP_RETURN_CODE 77)
endforeach()
# The response side of vsoc replay and the commands that read its store.
foreach(t loop approve idempotent determinism approve-all dry-run no-key bad-playbook tamper)
  add_test(NAME e2e.response.${t} COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/response.sh ${t})
  set_tests_properties(e2e.response.${t} PROPERTIES LABELS e2e ENVIRONMENT "${VSOC_E2E_ENV}")
endforeach()
add_test(NAME e2e.response.shared COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/response.sh shared)
set_tests_properties(e2e.response.shared PROPERTIES LABELS shared-data ENVIRONMENT "${VSOC_E2E_ENV}"
                     SKIP_RETURN_CODE 77)
# fleet_count: hits of several vehicles counted into one fleet alert by vsoc replay.
add_test(NAME e2e.fleet COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/fleet.sh)
set_tests_properties(e2e.fleet PROPERTIES LABELS e2e ENVIRONMENT "${VSOC_E2E_ENV}")
