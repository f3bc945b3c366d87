# run_example.cmake — the CTest driver of one example (see CMakeLists.txt):
#   cmake -DEXE=<program> -DEXPECT_FILE=<file> -P run_example.cmake
# Runs the program, echoes its output, and fails unless it exited with 0 and its
# standard output matches every regex of EXPECT_FILE: one regex per line, "\n" in a
# regex standing for a newline, and a leading "!" meaning the regex must NOT match.
# (CTest's PASS_REGULAR_EXPRESSION is not used: it ignores the exit code.)
execute_process(COMMAND ${EXE}
                RESULT_VARIABLE rc
                OUTPUT_VARIABLE out
                ERROR_VARIABLE err
                ECHO_OUTPUT_VARIABLE ECHO_ERROR_VARIABLE
                TIMEOUT 55)
set(failed FALSE)
if(NOT rc STREQUAL "0")
  message(SEND_ERROR "${EXE} did not succeed: ${rc}")
  set(failed TRUE)
endif()

file(STRINGS ${EXPECT_FILE} regexes ENCODING UTF-8)
foreach(re IN LISTS regexes)
  string(REPLACE "\\n" "\n" re "${re}")
  if(re MATCHES "^!")
    string(SUBSTRING "${re}" 1 -1 re)
    if(out MATCHES "${re}")
      message(SEND_ERROR "the output matches what it must not: ${re}")
      set(failed TRUE)
    endif()
  elseif(NOT out MATCHES "${re}")
    message(SEND_ERROR "the output does not match: ${re}")
    set(failed TRUE)
  endif()
endforeach()
if(failed)
  message(FATAL_ERROR "example failed: ${EXE}")
endif()
