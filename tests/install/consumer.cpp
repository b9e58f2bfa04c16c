// consumer.cpp - a C++ program built against an installed shmht (pkg-config shmht, with
// -std=c++20): opens a table, puts, gets, deletes, walks it and removes it.
//
//   consumer NAME
#include <cstdio>
#include <filesystem>
#include <string>

#include <shmht/table.hpp>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: consumer NAME\n");
    return 2;
  }
  const std::string name = argv[1];
  try {
    {
      shmht::Table t = shmht::Table::open_or_create(name, {.capacity = 1000});
      t.assign("from-c++", "hello");
      if (t.get("from-c++") != "hello") throw std::runtime_error("get returned another value");
      t.assign("scratch", "x");
      if (!t.erase("scratch") || t.contains("scratch")) throw std::runtime_error("erase did not erase");
      int items = 0;
      for (const auto& [key, value] : t.items()) items += key == "from-c++" && value == "hello";
      if (items != 1) throw std::runtime_error("items() did not yield the one item");
      std::printf("consumer: %s holds %llu item(s), engine %s\n", t.path().c_str(),
                  static_cast<unsigned long long>(t.size()), std::string(shmht::engine_name(t.engine())).c_str());
    }
    if (!shmht::Table::remove(std::filesystem::path(name))) throw std::runtime_error("remove found no table");
    std::printf("consumer: removed\n");
  } catch (const shmht::Error& e) {
    std::fprintf(stderr, "consumer: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "consumer: %s\n", e.what());
    return 1;
  }
  return 0;
}
