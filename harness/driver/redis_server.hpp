// redis_server.hpp - a private redis-server for one driver run (store_redis.cpp's peer).
//
// The harness never uses a system-wide Redis: each run starts its own redis-server from
// PATH, on a unix socket in a directory of its own, with nothing that outlives the run:
//
//   <backing dir>/<name prefix>redis/        mode 0700, removed by stop()
//       redis.sock                           --unixsocket, --unixsocketperm 700, --port 0
//       redis.log                            the server's stdout and stderr
//
// Persistence is off (--save '' --appendonly no), --maxmemory bounds the heap with the
// noeviction policy (a write past it is an error reply, never a silent eviction), and
// --daemonize no keeps the server our child, so we can reap it. It dies with the driver
// in every case:
//   - stop() (and the destructor) SIGKILLs and reaps it, then removes the directory. With
//     persistence off there is nothing for a graceful shutdown to write.
//   - The child sets PR_SET_PDEATHSIG(SIGKILL) before exec, so a driver that is itself
//     killed (SIGKILL, a crash) takes the server with it. Only the directory is left
//     then; it carries the run's name prefix, and run.py sweeps such leftovers up.
//   - It runs in a process group of its own, so a Ctrl-C at the terminal reaches the
//     driver, which stops the server itself, rather than both racing to exit.
//
// Redis executes commands on one thread: every worker's requests queue at that one
// process. Its CPU time (cpu_times(), from /proc/<pid>/stat) is where a Redis run's work
// goes, beyond the workers' own user and sys time.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

namespace shmht::harness {

// The redis-server this machine would run, looked up once per process.
struct RedisServerProgram {
  std::string path;             // found on PATH and new enough; empty otherwise
  std::string version;          // "7.0.15"
  std::string unusable_reason;  // why not, when path is empty
};
const RedisServerProgram& redis_server_program();

// The oldest redis-server the stores accept: SET ... GET (an overwrite that says whether
// the key was new, in one command) arrived in Redis 6.2.
inline constexpr int kRedisMinimumMajor = 6, kRedisMinimumMinor = 2;

struct ProcessCpuTimes {
  double user_s = 0, sys_s = 0;
};

// CPU time of a live process so far (/proc/<pid>/stat; clock-tick resolution, 10 ms
// here); nullopt if it cannot be read.
std::optional<ProcessCpuTimes> process_cpu_times(pid_t pid);

class RedisServer {
 public:
  // Makes `directory` (it must not exist), starts redis-server there and waits until its
  // socket accepts connections. Throws, with the server's last log lines, if it cannot;
  // nothing is left running or on disk then.
  RedisServer(std::string directory, std::uint64_t maxmemory_bytes);
  ~RedisServer() { stop(); }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // Kills and reaps the server and removes its directory. Idempotent; never throws.
  void stop() noexcept;

  const std::string& socket_path() const { return socket_path_; }
  const std::string& directory() const { return directory_; }
  pid_t pid() const { return pid_; }
  std::optional<ProcessCpuTimes> cpu_times() const { return process_cpu_times(pid_); }

 private:
  void start(std::uint64_t maxmemory_bytes);
  void wait_until_accepting();
  std::string log_tail() const;

  std::string directory_, socket_path_, log_path_;
  pid_t pid_ = -1;
};

}  // namespace shmht::harness
