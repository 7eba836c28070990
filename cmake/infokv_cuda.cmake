# Optional CUDA for the project's own CUDA tests and benchmarks. The library itself needs nothing
# from here: its CUDA headers (include/infokv/cuda/*.cuh) are compiled by the consumer's nvcc.
#
# INFOKV_ENABLE_CUDA: AUTO (default when infokv is the top-level project) probes for nvcc and
# uses it when found; ON requires it; OFF (default as a subproject) never probes, so an engine
# that vendors infokv never has CUDA enabled behind its back.
if(PROJECT_IS_TOP_LEVEL)
  set(_infokv_cuda_default AUTO)
else()
  set(_infokv_cuda_default OFF)
endif()
set(INFOKV_ENABLE_CUDA ${_infokv_cuda_default} CACHE STRING "Build the CUDA tests and benchmarks: AUTO, ON or OFF")
set_property(CACHE INFOKV_ENABLE_CUDA PROPERTY STRINGS AUTO ON OFF)

set(INFOKV_CUDA_ENABLED OFF)
if(NOT INFOKV_ENABLE_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  # nvcc is often installed outside PATH; look where the CUDA toolkit installs it.
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
    find_program(_infokv_nvcc nvcc HINTS ENV CUDA_PATH PATH_SUFFIXES bin PATHS /usr/local/cuda/bin)
    if(_infokv_nvcc)
      set(CMAKE_CUDA_COMPILER ${_infokv_nvcc} CACHE FILEPATH "CUDA compiler")
    endif()
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # Ampere and Hopper unless the user chose; never `native`, which fails without a GPU.
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 80 90)
    endif()
    enable_language(CUDA)
    set(INFOKV_CUDA_ENABLED ON)
    message(STATUS "infokv: CUDA tests and benchmarks enabled (${CMAKE_CUDA_COMPILER}, architectures ${CMAKE_CUDA_ARCHITECTURES})")
  elseif(INFOKV_ENABLE_CUDA STREQUAL "ON")
    message(FATAL_ERROR "INFOKV_ENABLE_CUDA=ON but no CUDA compiler was found (set CMAKE_CUDA_COMPILER)")
  else()
    message(STATUS "infokv: no CUDA compiler found; CUDA tests and benchmarks are not built")
  endif()
endif()

# C++20 for a target's CUDA sources. CMake 3.25.1 does not know cuda_std_20 for nvcc 13 (fixed in
# 3.25.2), so there the flag is passed by hand; CMAKE_CUDA_STANDARD is never set globally.
function(infokv_cuda_target target)
  if(CMAKE_VERSION VERSION_LESS 3.25.2)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20>)
  else()
    target_compile_features(${target} PRIVATE cuda_std_20)
  endif()
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra>
                         $<$<AND:$<COMPILE_LANGUAGE:CUDA>,$<BOOL:${INFOKV_WERROR}>>:--Werror=all-warnings>)
endfunction()
