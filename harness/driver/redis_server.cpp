// redis_server.cpp - see redis_server.hpp.
#include "redis_server.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "shared_control.hpp"

namespace shmht::harness {
namespace {

constexpr const char* kProgramName = "redis-server";
constexpr double kStartTimeoutS = 10;
constexpr long kStartPollNs = 2'000'000;
constexpr std::size_t kLogTailLines = 5;

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

// The first executable `name` in a directory of $PATH, or "".
std::string find_on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream directories(path ? path : "");
  std::string directory;
  while (std::getline(directories, directory, ':')) {
    if (directory.empty()) continue;
    const std::string candidate = directory + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// Runs `program --version` and returns its stdout (bounded; stderr discarded).
std::optional<std::string> version_output(const std::string& program) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return std::nullopt;
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    return std::nullopt;
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(pipe_fds[1], STDOUT_FILENO);
    const int null_fd = open("/dev/null", O_WRONLY);
    if (null_fd >= 0) dup2(null_fd, STDERR_FILENO);
    execl(program.c_str(), program.c_str(), "--version", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(pipe_fds[1]);
  std::string out;
  char buffer[256];
  for (ssize_t n; out.size() < 4096 && (n = read(pipe_fds[0], buffer, sizeof buffer)) != 0;) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    out.append(buffer, static_cast<std::size_t>(n));
  }
  close(pipe_fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::nullopt;
  return out;
}

// "Redis server v=7.0.15 sha=..." -> "7.0.15".
std::string parse_version(const std::string& output) {
  const auto at = output.find("v=");
  if (at == std::string::npos) return "";
  const auto end = output.find_first_of(" \n", at);
  return output.substr(at + 2, end == std::string::npos ? std::string::npos : end - at - 2);
}

bool at_least_minimum(const std::string& version) {
  int major = 0, minor = 0;
  if (std::sscanf(version.c_str(), "%d.%d", &major, &minor) != 2) return false;
  return major > kRedisMinimumMajor || (major == kRedisMinimumMajor && minor >= kRedisMinimumMinor);
}

RedisServerProgram look_for_redis_server() {
  RedisServerProgram program;
  const std::string path = find_on_path(kProgramName);
  if (path.empty()) {
    program.unusable_reason = "redis-server is not on PATH (install the Debian package redis-server)";
    return program;
  }
  const auto output = version_output(path);
  program.version = output ? parse_version(*output) : "";
  if (program.version.empty()) {
    program.unusable_reason = path + " --version did not print a version";
  } else if (!at_least_minimum(program.version)) {
    program.unusable_reason = path + " is Redis " + program.version + "; the redis stores need " +
                              std::to_string(kRedisMinimumMajor) + "." + std::to_string(kRedisMinimumMinor) +
                              " or later (SET ... GET)";
  } else {
    program.path = path;
  }
  return program;
}

// True once a unix socket at `path` accepts a connection.
bool accepts_connections(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  const bool connected = connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
  close(fd);
  return connected;
}

}  // namespace

const RedisServerProgram& redis_server_program() {
  static const RedisServerProgram program = look_for_redis_server();
  return program;
}

std::optional<ProcessCpuTimes> process_cpu_times(pid_t pid) {
  // Fields 14 and 15 (utime, stime), counted after the ")" that ends field 2: the
  // command name in parentheses may itself contain spaces.
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close_paren = text.rfind(')');
  if (close_paren == std::string::npos) return std::nullopt;
  std::istringstream fields(text.substr(close_paren + 1));
  std::string skipped;
  for (int field = 3; field < 14; ++field) fields >> skipped;
  unsigned long long utime = 0, stime = 0;
  if (!(fields >> utime >> stime)) return std::nullopt;
  const auto ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  return ProcessCpuTimes{static_cast<double>(utime) / ticks, static_cast<double>(stime) / ticks};
}

RedisServer::RedisServer(std::string directory, std::uint64_t maxmemory_bytes)
    : directory_(std::move(directory)),
      socket_path_(directory_ + "/redis.sock"),
      log_path_(directory_ + "/redis.log") {
  const RedisServerProgram& program = redis_server_program();
  if (program.path.empty()) throw std::runtime_error(program.unusable_reason);
  if (socket_path_.size() >= sizeof(sockaddr_un::sun_path)) {
    throw std::runtime_error("redis socket path " + socket_path_ + " is " + std::to_string(socket_path_.size()) +
                             " bytes; a unix socket path must be under " +
                             std::to_string(sizeof(sockaddr_un::sun_path)) + " (shorten --name-prefix)");
  }
  if (mkdir(directory_.c_str(), 0700) != 0) {
    const std::string why = errno_text("creating " + directory_);
    directory_.clear();  // not ours: stop() must not remove it
    throw std::runtime_error(why);
  }
  try {
    start(maxmemory_bytes);
    wait_until_accepting();
  } catch (...) {
    stop();
    throw;
  }
}

void RedisServer::start(std::uint64_t maxmemory_bytes) {
  const std::string& program = redis_server_program().path;
  // Built before fork: the child only execs.
  std::vector<std::string> args = {
      program,
      "--port", "0",
      "--unixsocket", socket_path_,
      "--unixsocketperm", "700",
      "--save", "",
      "--appendonly", "no",
      "--daemonize", "no",
      "--dir", directory_,
      "--maxmemory", std::to_string(maxmemory_bytes),
      "--maxmemory-policy", "noeviction",
  };
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  const int log_fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (log_fd < 0) throw std::runtime_error(errno_text("creating " + log_path_));
  const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ == 0) {
    // The child: die with the driver, leave its signal mask and terminal group, exec.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the driver died before the prctl took hold
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);  // the driver blocks the signals it waits for
    if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    execv(argv[0], argv.data());
    const char message[] = "shmht-driver: exec of redis-server failed\n";
    (void)!write(STDERR_FILENO, message, sizeof message - 1);
    _exit(127);
  }
  const int fork_errno = errno;
  close(log_fd);
  if (null_fd >= 0) close(null_fd);
  if (pid_ < 0) {
    errno = fork_errno;
    throw std::runtime_error(errno_text("fork for redis-server"));
  }
}

void RedisServer::wait_until_accepting() {
  const std::uint64_t deadline = monotonic_ns() + static_cast<std::uint64_t>(kStartTimeoutS * 1e9);
  for (;;) {
    if (accepts_connections(socket_path_)) return;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("redis-server exited at startup (status " + std::to_string(status) + "): " + log_tail());
    }
    if (monotonic_ns() >= deadline) {
      throw std::runtime_error("redis-server did not accept connections on " + socket_path_ + " within " +
                               std::to_string(static_cast<int>(kStartTimeoutS)) + " s: " + log_tail());
    }
    const timespec pause{0, kStartPollNs};
    nanosleep(&pause, nullptr);
  }
}

std::string RedisServer::log_tail() const {
  std::ifstream in(log_path_);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  std::string tail;
  for (std::size_t i = lines.size() > kLogTailLines ? lines.size() - kLogTailLines : 0; i < lines.size(); ++i) {
    tail += (tail.empty() ? "" : " | ") + lines[i];
  }
  return tail.empty() ? "(its log is empty)" : tail;
}

void RedisServer::stop() noexcept {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }
  if (!directory_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(directory_, ignored);
    directory_.clear();
  }
}

}  // namespace shmht::harness
