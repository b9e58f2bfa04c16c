// machine.hpp - what the result records about the machine a run used.
#pragma once

#include "json_writer.hpp"

namespace shmht::harness {

// Writes {"hostname", "kernel", "cpu_model", "logical_cpus", "memory_bytes",
// "thp_enabled", "thp_shmem_enabled", "hugepages_total", "hugepages_free", "compiler"}.
void write_machine(JsonWriter& json);

}  // namespace shmht::harness
