#include "core/common/redact.h"

#include <cctype>

namespace gut::core {
namespace {

// Where an absolute path may begin: the start, or after a space, a quote, a bracket, '=', '<'
// or a comma (not "host:port/..." or a URL, whose '/' follows a letter, a digit, ':' or another '/').
bool PathMayStartAfter(char c) {
  return std::isspace(static_cast<unsigned char>(c)) || c == '\'' || c == '"' || c == '(' || c == '[' || c == '=' ||
         c == '<' || c == ',';
}
bool PathChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '.' || c == '_' || c == '-' || c == '+' ||
         c == '~' || c == '@';
}

}  // namespace

std::string RedactPaths(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const bool starts = text[i] == '/' && (i == 0 || PathMayStartAfter(text[i - 1])) && i + 1 < text.size() &&
                        PathChar(text[i + 1]) && text[i + 1] != '/';
    if (!starts) {
      out += text[i++];
      continue;
    }
    size_t end = i;
    while (end < text.size() && PathChar(text[end])) ++end;
    // A trailing '.' or ',' ends the sentence, not the path.
    while (end > i + 1 && (text[end - 1] == '.' || text[end - 1] == ',')) --end;
    const std::string path = text.substr(i, end - i);
    const size_t last = path.find_last_of('/', path.size() > 1 && path.back() == '/' ? path.size() - 2 : std::string::npos);
    out += last == 0 ? path : ".../" + path.substr(last + 1);
    i = end;
  }
  return out;
}

}  // namespace gut::core
