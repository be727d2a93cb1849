# CTest script (cmake -P): fails unless the number of CTest entries labelled unit equals the
# number of Catch2 cases unit_tests knows. Arguments: CTEST, BUILD_DIR, UNIT_TESTS.
# Catch2 v2 exits with the number of cases listed, not 0: the output is what counts.
execute_process(COMMAND ${UNIT_TESTS} --list-test-names-only OUTPUT_VARIABLE names)
string(REGEX MATCHALL "[^\n]+" name_lines "${names}")
list(LENGTH name_lines cases)

execute_process(COMMAND ${CTEST} --test-dir ${BUILD_DIR} -N -L "^unit$"
                OUTPUT_VARIABLE listing RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "ctest -N failed (${status})")
endif()
string(REGEX MATCH "Total Tests: ([0-9]+)" total "${listing}")
set(entries ${CMAKE_MATCH_1})

if(NOT cases EQUAL entries)
  message(FATAL_ERROR "${entries} CTest unit entries for ${cases} Catch2 cases: some case runs "
                      "never or twice (a ';' in a name?)")
endif()
message(STATUS "${cases} Catch2 cases, ${entries} CTest unit entries")
