// store_redis.cpp - Redis as a peer: "why not just use Redis?" answered in the same run.
//
//   redis            one command per operation: send, wait for the reply (hiredis's
//                    redisCommand, the way most clients use Redis)
//   redis-pipelined  each worker sends --batch commands, then reads their replies: one
//                    round trip per batch (redisAppendCommand ... redisGetReply)
//
// The driver starts a private redis-server per run (redis_server.hpp: unix socket in a
// directory of its own, persistence off, killed with the driver) and every worker opens
// its own hiredis connection after fork. Operations map onto single atomic commands, keys
// and values passed binary-safe (%b):
//
//   get     GET k            string: found (copied out); nil: absent
//   insert  SET k v NX       OK: inserted; nil: already present
//   assign  SET k v GET      nil: the key was new; string: overwritten (Redis >= 6.2)
//   erase   DEL k            1: erased; 0: absent
//
// Any other reply (an error such as OOM past --maxmemory, or an unexpected type) is an
// error for that operation, as a failed operation of any other store is.
//
// Redis executes every command on one thread, so all workers queue at one process; the
// driver reports that process's CPU time (server_usage) next to the workers'. Its memory
// is the server's heap, not a file: the footprint reports the server's resident set
// (resident_bytes) and the allocator's live bytes (apparent_bytes), from INFO memory.
// The data does not live on the backing; only the socket's directory does (tmpfs).
#include <signal.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "redis_server.hpp"
#include "store.hpp"

#if SHMHT_HARNESS_HIREDIS
#include <hiredis/hiredis.h>
#endif

namespace shmht::harness {
namespace {

#if SHMHT_HARNESS_HIREDIS

struct ReplyDeleter {
  void operator()(redisReply* reply) const { freeReplyObject(reply); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

std::string describe(const redisReply& reply) {
  switch (reply.type) {
    case REDIS_REPLY_ERROR: return "error reply '" + std::string(reply.str, reply.len) + "'";
    case REDIS_REPLY_STATUS: return "status reply '" + std::string(reply.str, reply.len) + "'";
    case REDIS_REPLY_STRING: return "a string reply of " + std::to_string(reply.len) + " bytes";
    case REDIS_REPLY_INTEGER: return "integer reply " + std::to_string(reply.integer);
    case REDIS_REPLY_NIL: return "a nil reply";
    case REDIS_REPLY_ARRAY: return "an array reply";
  }
  return "a reply of type " + std::to_string(reply.type);
}

[[noreturn]] void unexpected(OpType op, const redisReply& reply) {
  throw std::runtime_error("redis " + std::string(kOpNames[static_cast<std::size_t>(op)]) + ": " + describe(reply));
}

// What the one-at-a-time operation returns for `reply` (see the table above); throws
// for any other reply. A found value is copied into value_out (truncated to its size).
bool interpret(OpType op, const redisReply& reply, std::span<char> value_out) {
  switch (op) {
    case OpType::kGet:
      if (reply.type == REDIS_REPLY_NIL) return false;
      if (reply.type != REDIS_REPLY_STRING) break;
      std::memcpy(value_out.data(), reply.str, std::min(reply.len, value_out.size()));
      return true;
    case OpType::kInsert:
      if (reply.type == REDIS_REPLY_NIL) return false;
      if (reply.type == REDIS_REPLY_STATUS && std::string_view(reply.str, reply.len) == "OK") return true;
      break;
    case OpType::kAssign:
      if (reply.type == REDIS_REPLY_NIL) return true;
      if (reply.type == REDIS_REPLY_STRING) return false;
      break;
    case OpType::kErase:
      if (reply.type == REDIS_REPLY_INTEGER && (reply.integer == 0 || reply.integer == 1)) return reply.integer == 1;
      break;
  }
  unexpected(op, reply);
}

// One hiredis connection over the server's unix socket, blocking.
class Connection {
 public:
  explicit Connection(const std::string& socket_path) : context_(redisConnectUnix(socket_path.c_str())) {
    if (!context_) throw std::runtime_error("redis: cannot allocate a connection");
    if (context_->err) {
      const std::string why = "redis: connecting to " + socket_path + ": " + context_->errstr;
      redisFree(context_);
      throw std::runtime_error(why);
    }
  }
  ~Connection() { redisFree(context_); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Queues `op` on `key` (and `value`) in the output buffer; nothing is sent yet.
  void append(OpType op, std::string_view key, std::string_view value) {
    int rc = REDIS_ERR;
    switch (op) {
      case OpType::kGet: rc = redisAppendCommand(context_, "GET %b", key.data(), key.size()); break;
      case OpType::kInsert:
        rc = redisAppendCommand(context_, "SET %b %b NX", key.data(), key.size(), value.data(), value.size());
        break;
      case OpType::kAssign:
        rc = redisAppendCommand(context_, "SET %b %b GET", key.data(), key.size(), value.data(), value.size());
        break;
      case OpType::kErase: rc = redisAppendCommand(context_, "DEL %b", key.data(), key.size()); break;
    }
    if (rc != REDIS_OK) fail("queueing a command");
  }

  // Sends whatever is queued (the first call after append) and reads the next reply.
  Reply next_reply() {
    void* reply = nullptr;
    if (redisGetReply(context_, &reply) != REDIS_OK || !reply) fail("reading a reply");
    return Reply(static_cast<redisReply*>(reply));
  }

  // One command with printf-style arguments (footprint and checks, not the timed phase).
  template <class... Args>
  Reply command(const char* format, Args... args) {
    void* reply = redisCommand(context_, format, args...);
    if (!reply) fail(format);
    return Reply(static_cast<redisReply*>(reply));
  }

 private:
  // After an I/O or protocol error hiredis refuses the connection for good.
  [[noreturn]] void fail(const std::string& doing) {
    throw std::runtime_error("redis: " + doing + ": " + (context_->err ? context_->errstr : "no reply"));
  }

  redisContext* context_;
};

class RedisSession final : public StoreSession {
 public:
  RedisSession(const std::string& socket_path, std::uint32_t value_bytes)
      : connection_(socket_path), scratch_value_(value_bytes, '\0') {}

  bool get(std::string_view key, std::span<char> value_out) override {
    return one(OpType::kGet, key, {}, value_out);
  }
  bool insert(std::string_view key, std::string_view value) override { return one(OpType::kInsert, key, value, {}); }
  bool assign(std::string_view key, std::string_view value) override { return one(OpType::kAssign, key, value, {}); }
  bool erase(std::string_view key) override { return one(OpType::kErase, key, {}, {}); }

  bool can_pipeline() const override { return true; }
  void enqueue(OpType op, std::string_view key, std::string_view value) override {
    connection_.append(op, key, value);
    queued_.push_back(op);
  }
  void collect(std::span<OpResult> results) override {
    if (results.size() != queued_.size()) {
      throw std::logic_error("collect: " + std::to_string(results.size()) + " results for " +
                             std::to_string(queued_.size()) + " queued operations");
    }
    // Replies arrive in command order. A lost connection ends the batch (it throws);
    // a reply that is an error fails its own operation only.
    std::vector<OpType> batch;
    batch.swap(queued_);
    for (std::size_t i = 0; i < batch.size(); ++i) {
      const Reply reply = connection_.next_reply();
      results[i].error.clear();
      try {
        results[i].value = interpret(batch[i], *reply, scratch_value_);
      } catch (const std::runtime_error& e) {
        results[i].error = e.what();
      }
    }
    batch.clear();
    queued_.swap(batch);  // keep the capacity
  }

 private:
  // Send one command and wait for its reply: what redisCommand does, through the same
  // append and reply code as the pipeline.
  bool one(OpType op, std::string_view key, std::string_view value, std::span<char> value_out) {
    connection_.append(op, key, value);
    return interpret(op, *connection_.next_reply(), value_out);
  }

  Connection connection_;
  std::string scratch_value_;  // where pipelined gets copy their values
  std::vector<OpType> queued_;
};

// The number after "field:" on its own line of an INFO reply ("used_memory:964280\r\n").
std::optional<std::uint64_t> info_field(std::string_view info, std::string_view field) {
  std::size_t line = 0;
  while (line < info.size()) {
    const std::size_t end = std::min(info.find('\n', line), info.size());
    const std::string_view text = info.substr(line, end - line);
    if (text.size() > field.size() && text.starts_with(field) && text[field.size()] == ':') {
      return std::strtoull(std::string(text.substr(field.size() + 1)).c_str(), nullptr, 10);
    }
    line = end + 1;
  }
  return std::nullopt;
}

class RedisStore final : public Store {
 public:
  explicit RedisStore(const StoreParams& params)
      : server_(params.backing.directory + "/" + params.name_prefix + "redis", maxmemory_for(params)),
        value_bytes_(params.value_bytes) {
    // A client that writes to a server that died gets EPIPE (an error it reports)
    // rather than a SIGPIPE that kills it silently; workers inherit this.
    signal(SIGPIPE, SIG_IGN);
  }
  ~RedisStore() override { destroy(); }

  std::unique_ptr<StoreSession> attach() override {
    return std::make_unique<RedisSession>(server_.socket_path(), value_bytes_);
  }

  Footprint footprint() override {
    Footprint f;
    f.location = "redis-server heap (pid " + std::to_string(server_.pid()) + ", socket " + server_.socket_path() + ")";
    Connection connection(server_.socket_path());
    const Reply size = connection.command("DBSIZE");
    if (size->type == REDIS_REPLY_INTEGER) f.items = static_cast<std::uint64_t>(size->integer);
    const Reply info = connection.command("INFO memory");
    if (info->type == REDIS_REPLY_STRING) {
      const std::string_view text(info->str, info->len);
      f.apparent_bytes = info_field(text, "used_memory");
      f.resident_bytes = info_field(text, "used_memory_rss");
    }
    return f;
  }

  std::optional<ServerUsage> server_usage() override {
    const std::optional<ProcessCpuTimes> cpu = server_.cpu_times();
    if (!cpu) return std::nullopt;
    return ServerUsage{.program = "redis-server",
                       .version = redis_server_program().version,
                       .pid = server_.pid(),
                       .user_s = cpu->user_s,
                       .sys_s = cpu->sys_s};
  }

  void destroy() noexcept override { server_.stop(); }

 private:
  // Twice a generous estimate of Redis's bytes per key (dict entry, key and value objects
  // and their allocator rounding), plus room for the server itself.
  static std::uint64_t maxmemory_for(const StoreParams& p) {
    constexpr std::uint64_t kOverheadPerKey = 128, kBase = std::uint64_t{64} << 20;
    return 2 * p.capacity * (std::uint64_t{p.key_bytes} + p.value_bytes + kOverheadPerKey) + kBase;
  }

  RedisServer server_;
  std::uint32_t value_bytes_;
};

std::optional<std::string> unavailable_reason() {
  const RedisServerProgram& program = redis_server_program();
  return program.path.empty() ? std::optional<std::string>(program.unusable_reason) : std::nullopt;
}

std::unique_ptr<Store> create(const StoreParams& params) { return std::make_unique<RedisStore>(params); }

#else  // built without hiredis

std::optional<std::string> unavailable_reason() {
  return "the driver was built without hiredis (install the Debian package libhiredis-dev, then reconfigure build/)";
}

std::unique_ptr<Store> create(const StoreParams&) { throw std::runtime_error(*unavailable_reason()); }

#endif

StoreKind redis_kind(std::string name, std::string description, bool pipelined) {
  return {
      .name = std::move(name),
      .family = StoreFamily::kPeer,
      .description = std::move(description),
      .backings = {BackingKind::kTmpfs},
      .process_private = false,
      .pipelined = pipelined,
      .unavailable_reason = unavailable_reason,
      .create = create,
  };
}

const StoreRegistration kOneCommandPerRoundTrip(
    redis_kind("redis", "a private redis-server on a unix socket, hiredis, one command per round trip", false));
const StoreRegistration kPipelined(redis_kind(
    "redis-pipelined", "a private redis-server on a unix socket, hiredis, --batch commands per round trip", true));

}  // namespace
}  // namespace shmht::harness
