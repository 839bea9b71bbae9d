# End-to-end tests of vsoc playbooks (label e2e): the default playbooks lint clean, the
# planted mistakes give exactly tests/e2e/playbooks-planted.expected, show round-trips.
set(VSOC_PB_E2E ${CMAKE_CURRENT_LIST_DIR}/playbooks.sh)
foreach(t lint-pack lint-planted show)
  add_test(NAME e2e.playbooks-${t} COMMAND bash ${VSOC_PB_E2E} ${t})
  set_tests_properties(e2e.playbooks-${t} PROPERTIES LABELS e2e
                       ENVIRONMENT "VSOC=$<TARGET_FILE:vsoc>;VSOC_SRC=${CMAKE_SOURCE_DIR}")
endforeach()
