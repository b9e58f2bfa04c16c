// cli/escape.hpp - the bytes of keys and values as text: dump's and load's escapes,
// get's terminal-safe form, and the UTF-8 test behind --json's "value".
//
// dump writes a tab, newline, carriage return or backslash as \t, \n, \r or \\, every
// other control byte (below 0x20, and 0x7f) and every byte from 0x80 up as \xNN (two hex
// digits), so its output is ASCII and never reaches a terminal as an escape sequence (C1
// controls, U+0080..U+009F, are c2 80..c2 9f in UTF-8: CSI and OSC among them). load
// reads exactly these escapes back (unescape), so `dump | load` restores every byte.
#pragma once

#include <charconv>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace shmht::cli {

// A byte that a terminal may act on rather than show (C0 controls and DEL).
inline bool is_control(char c) { return static_cast<unsigned char>(c) < 0x20 || c == '\x7f'; }

// Writes `s` with \t \n \r \\ for those bytes, and \xNN for each byte that is not in a
// run keep(s, i) says to show as it is (it returns that run's length at i; 0: escape the
// byte at i).
template <class Keep>
inline std::string escape_with(std::string_view s, Keep&& keep) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    switch (s[i]) {
      case '\t': out += "\\t"; ++i; continue;
      case '\n': out += "\\n"; ++i; continue;
      case '\r': out += "\\r"; ++i; continue;
      case '\\': out += "\\\\"; ++i; continue;
      default: break;
    }
    if (const std::size_t n = keep(s, i); n != 0) {
      out += s.substr(i, n);
      i += n;
    } else {
      const auto byte = static_cast<unsigned char>(s[i++]);
      out += {'\\', 'x', kHex[byte >> 4], kHex[byte & 0xf]};
    }
  }
  return out;
}

// dump's escaping: only printable ASCII as itself, so no terminal acts on a dump.
inline std::string escape(std::string_view s) {
  return escape_with(s, [](std::string_view t, std::size_t i) -> std::size_t {
    return static_cast<unsigned char>(t[i]) < 0x80 && !is_control(t[i]) ? 1 : 0;
  });
}

// One UTF-8 sequence: its length in bytes (0: s[i] starts no valid sequence: a stray
// continuation byte, 0xf8..0xff, a truncated, overlong or surrogate sequence, or one past
// U+10FFFF) and the code point it encodes.
struct Utf8Sequence {
  std::size_t length;
  char32_t code;
};

inline Utf8Sequence utf8_sequence_at(std::string_view s, std::size_t i) {
  const auto lead = static_cast<unsigned char>(s[i]);
  if (lead < 0x80) return {1, lead};
  std::size_t length = 0;
  char32_t code = 0, smallest = 0;
  if ((lead & 0xE0) == 0xC0) {
    length = 2, code = lead & 0x1F, smallest = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3, code = lead & 0x0F, smallest = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4, code = lead & 0x07, smallest = 0x10000;
  } else {
    return {0, 0};  // a continuation byte, or 0xf8..0xff: never a lead
  }
  if (s.size() - i < length) return {0, 0};
  for (std::size_t k = 1; k < length; ++k) {
    const auto next = static_cast<unsigned char>(s[i + k]);
    if ((next & 0xC0) != 0x80) return {0, 0};
    code = (code << 6) | (next & 0x3F);
  }
  if (code < smallest || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return {0, 0};
  return {length, code};
}

// Bidirectional formatting controls: shown as themselves they reorder the text after them
// on the terminal, so "evil\u202Etxt.exe" reads as "evilexe.txt" (CVE-2021-42574,
// "Trojan Source"). U+061C ALM, U+200E LRM, U+200F RLM, U+202A..U+202E LRE RLE PDF LRO
// RLO, U+2066..U+2069 LRI RLI FSI PDI.
inline bool is_bidi_control(char32_t code) {
  return code == 0x061C || code == 0x200E || code == 0x200F || (code >= 0x202A && code <= 0x202E) ||
         (code >= 0x2066 && code <= 0x2069);
}

// The length of the valid UTF-8 sequence at s[i] if it encodes a printable code point
// (not C0, DEL, C1 U+0080..U+009F or a bidi control), else 0.
inline std::size_t printable_utf8_at(std::string_view s, std::size_t i) {
  const Utf8Sequence at = utf8_sequence_at(s, i);
  if (at.length == 0 || at.code < 0x20 || (at.code >= 0x7f && at.code <= 0x9f) || is_bidi_control(at.code)) return 0;
  return at.length;
}

// get's escaping on a terminal (and ls's names and problems, cas's message): printable
// UTF-8 as itself, every other byte escaped (a bidi control's bytes too).
inline std::string escape_for_terminal(std::string_view s) { return escape_with(s, printable_utf8_at); }

// A line of load's input that cannot be read as KEY<TAB>VALUE; what() says why.
struct MalformedLine : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The byte that two hex digits (\xNN's NN) name.
inline char hex_byte(std::string_view digits) {
  unsigned value = 0;
  const auto parsed = std::from_chars(digits.data(), digits.data() + digits.size(), value, 16);
  if (digits.size() != 2 || parsed.ec != std::errc() || parsed.ptr != digits.data() + 2) {
    throw MalformedLine("\\x needs two hex digits");
  }
  return static_cast<char>(value);
}

inline std::string unescape(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out += s[i];
      continue;
    }
    if (++i == s.size()) throw MalformedLine("dangling backslash");
    switch (s[i]) {
      case 't': out += '\t'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case '\\': out += '\\'; break;
      case 'x': out += hex_byte(s.substr(i + 1, 2)); i += 2; break;
      default: throw MalformedLine(std::string("unknown escape \\") + s[i] + " (known: \\t \\n \\r \\\\ \\xNN)");
    }
  }
  return out;
}

inline std::pair<std::string, std::string> parse_line(std::string_view line) {
  const auto tab = line.find('\t');
  if (tab == std::string_view::npos) throw MalformedLine("no tab between key and value");
  return {unescape(line.substr(0, tab)), unescape(line.substr(tab + 1))};
}

// True when `s` is well-formed UTF-8: then JSON can carry it as a string (the JSON writer
// escapes its controls).
inline bool is_valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t length = utf8_sequence_at(s, i).length;
    if (length == 0) return false;
    i += length;
  }
  return true;
}

}  // namespace shmht::cli
