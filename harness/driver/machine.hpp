// machine.hpp - what the result records about the machine a run used.
#pragma once

#include "json.hpp"

namespace shmht::harness {

// {"hostname", "kernel", "arch", "cpu_model", "logical_cpus", "memory_bytes",
//  "thp_enabled", "thp_shmem_enabled", "hugepages_total", "hugepages_free", "compiler"}.
Json machine_json();

}  // namespace shmht::harness
