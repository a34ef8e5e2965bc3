#include "core/config/manifest.h"

#include "core/config/exchange_settings.h"
#include "core/config/manifest_checks.h"
#include "core/common/numerics.h"

#include "core/data/dataset.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <set>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/topology/graph.h"

namespace gut::core {
namespace {

const char* const kGraphs = "ring, torus, torus2d, dyck, petersen, full, chain, exponential, edges";

// Reads typed values out of a YAML map and remembers which keys were used, so that anything left
// over (a typo, a key of a later version) is reported instead of silently ignored.
class MapReader {
 public:
  MapReader(const YAML::Node& node, std::string path, std::string source)
      : node_(node), path_(std::move(path)), source_(std::move(source)) {}

  absl::Status Check() const {
    if (node_ && !node_.IsNull() && !node_.IsMap()) {
      return absl::InvalidArgumentError(absl::StrCat(Where(node_), path_, " must be a mapping"));
    }
    // YAML forbids a key twice in one mapping; yaml-cpp keeps both and would silently use one.
    if (node_ && node_.IsMap()) {
      std::set<std::string> seen;
      for (const auto& kv : node_) {
        if (!kv.first.IsScalar()) {
          return absl::InvalidArgumentError(absl::StrCat(Where(kv.first), path_.empty() ? "the manifest" : path_,
                                                         " has a key that is not a plain name"));
        }
        const std::string k = kv.first.Scalar();
        if (!seen.insert(k).second) {
          return absl::InvalidArgumentError(absl::StrCat(Where(kv.first), "key '", Key(k),
                                                         "' appears twice; give each key once"));
        }
      }
    }
    return absl::OkStatus();
  }

  template <typename V>
  absl::Status Get(const std::string& key, V* out) {
    Use(key);
    if (!node_ || !node_.IsMap()) return absl::OkStatus();
    const YAML::Node v = node_[key];
    if (!v || v.IsNull()) return absl::OkStatus();
    try {
      *out = v.as<V>();
    } catch (const YAML::Exception&) {
      return absl::InvalidArgumentError(absl::StrCat(Where(v), Key(key), ": cannot read '",
                                                     Dump(v), "' as ", TypeName<V>()));
    }
    return absl::OkStatus();
  }

  YAML::Node Child(const std::string& key) {
    Use(key);
    if (!node_ || !node_.IsMap()) return YAML::Node();
    return node_[key];
  }

  // Refuses a key that no Get or Child has asked for; the message lists those, in asking order.
  absl::Status NoUnknownKeys() const {
    if (!node_ || !node_.IsMap()) return absl::OkStatus();
    const std::string allowed = absl::StrJoin(asked_, ", ");
    for (const auto& kv : node_) {
      const std::string k = kv.first.IsScalar() ? kv.first.Scalar() : std::string("?");
      if (!used_.count(k)) {
        return absl::InvalidArgumentError(absl::StrCat(Where(kv.first), "unknown key '", Key(k),
                                                       "'; allowed keys here: ", allowed));
      }
    }
    return absl::OkStatus();
  }

  std::string Key(const std::string& k) const { return path_.empty() ? k : path_ + "." + k; }
  std::string Where(const YAML::Node& n) const {
    const YAML::Mark m = n.Mark();
    if (m.is_null()) return source_ + ": ";
    return absl::StrCat(source_, ":", m.line + 1, ": ");
  }

 private:
  static std::string Dump(const YAML::Node& n) {
    std::stringstream ss;
    ss << n;
    return ss.str();
  }
  template <typename V>
  static const char* TypeName() {
    if constexpr (std::is_same_v<V, bool>) return "a boolean";
    else if constexpr (std::is_integral_v<V>) return "an integer";
    else if constexpr (std::is_floating_point_v<V>) return "a number";
    else if constexpr (std::is_same_v<V, std::string>) return "a string";
    else return "a list";
  }

  void Use(const std::string& key) {
    if (used_.insert(key).second) asked_.push_back(key);
  }

  YAML::Node node_;
  std::string path_, source_;
  std::set<std::string> used_;
  std::vector<std::string> asked_;  // used_ in asking order, for the unknown-key message
};

// One key of a mapping and the field its value goes to (any type MapReader::Get reads).
class Field {
 public:
  template <typename V>
  Field(const char* key, V* out) : read_([key, out](MapReader& r) { return r.Get(key, out); }) {}
  absl::Status Read(MapReader& r) const { return read_(r); }

 private:
  std::function<absl::Status(MapReader&)> read_;
};

// Checks the mapping and reads the fields in order; the first problem wins.
absl::Status ReadFields(MapReader& r, std::initializer_list<Field> fields) {
  if (auto s = r.Check(); !s.ok()) return s;
  for (const Field& f : fields) {
    if (auto s = f.Read(r); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ApplyOverride(YAML::Node& root, const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--set '", text, "': expected key.path=value, e.g. run.epochs=1"));
  }
  const std::string path = text.substr(0, eq);
  const std::string value = text.substr(eq + 1);
  std::vector<std::string> keys = absl::StrSplit(path, '.');
  YAML::Node parsed;
  try {
    parsed = YAML::Load(value);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("--set ", path, ": cannot parse value '", value,
                                                   "': ", e.msg));
  }
  // yaml-cpp nodes are handles: walk down with copies that refer into the tree.
  std::vector<YAML::Node> chain{root};
  for (size_t i = 0; i + 1 < keys.size(); ++i) {
    YAML::Node cur = chain.back();
    if (!cur.IsMap() && !cur.IsNull()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--set ", path, ": '", absl::StrJoin(keys.begin(), keys.begin() + i, "."),
          "' is not a mapping"));
    }
    YAML::Node next = cur[keys[i]];
    if (!next || next.IsNull()) {
      cur[keys[i]] = YAML::Node(YAML::NodeType::Map);
      next = cur[keys[i]];
    }
    chain.push_back(next);
  }
  YAML::Node parent = chain.back();
  if (!parent.IsMap() && !parent.IsNull()) {
    return absl::InvalidArgumentError(absl::StrCat("--set ", path, ": parent is not a mapping"));
  }
  parent[keys.back()] = parsed;
  return absl::OkStatus();
}

// topology.edges: a list of [a, b] rank pairs (graph: edges).
absl::Status ReadEdges(MapReader& topo, std::vector<std::pair<int, int>>* edges) {
  const YAML::Node e = topo.Child("edges");
  if (!e || e.IsNull()) return absl::OkStatus();
  if (!e.IsSequence()) {
    return absl::InvalidArgumentError(absl::StrCat(topo.Where(e), "topology.edges must be a list of [a, b] pairs"));
  }
  for (size_t k = 0; k < e.size(); ++k) {
    const YAML::Node p = e[k];
    if (!p.IsSequence() || p.size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat(topo.Where(p), "topology.edges[", k, "] must be a pair [a, b]"));
    }
    try {
      edges->emplace_back(p[0].as<int>(), p[1].as<int>());
    } catch (const YAML::Exception&) {
      return absl::InvalidArgumentError(absl::StrCat(topo.Where(p), "topology.edges[", k, "] must hold two integer ranks"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<RunConfig> ParseManifestUnguarded(const std::string& yaml_text, const std::string& source,
                                                 const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::ParserException& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ":", e.mark.line + 1, ": YAML syntax error: ", e.msg));
  }
  if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap()) return absl::InvalidArgumentError(absl::StrCat(source, ": the manifest must be a YAML mapping"));
  for (const auto& o : overrides) {
    if (auto s = ApplyOverride(root, o); !s.ok()) return s;
  }

  RunConfig c;
  MapReader top(root, "", source);
  absl::Status st;
  auto chain = [&st](absl::Status s) { if (st.ok()) st = std::move(s); };
  chain(top.Check());

  // A section with nothing but plain keys: read them, then refuse any other.
  auto section = [&](const char* name, std::initializer_list<Field> fields) {
    MapReader r(top.Child(name), name, source);
    chain(ReadFields(r, fields));
    chain(r.NoUnknownKeys());
  };
  section("run", {{"name", &c.name}, {"seed", &c.seed}, {"epochs", &c.epochs},
                  {"final_gossip_rounds", &c.final_gossip_rounds}, {"eval_every", &c.eval_every},
                  {"threads", &c.threads}, {"numerics", &c.numerics}});
  section("agents", {{"count", &c.num_agents}});

  MapReader topo(top.Child("topology"), "topology", source);
  chain(ReadFields(topo, {{"graph", &c.graph}, {"rows", &c.rows}, {"cols", &c.cols}}));
  chain(ReadEdges(topo, &c.edges));
  chain(topo.Get("weights", &c.weights));
  chain(topo.NoUnknownKeys());

  MapReader algo(top.Child("algorithm"), "algorithm", source);
  chain(ReadFields(algo, {{"name", &c.hyper.algorithm}, {"lr", &c.hyper.lr}, {"momentum", &c.hyper.momentum},
                          {"mu", &c.hyper.mu}, {"nesterov", &c.hyper.nesterov}, {"qgm_beta", &c.hyper.qgm_beta}}));
  {
    MapReader sched(algo.Child("schedule"), "algorithm.schedule", source);
    chain(ReadFields(sched, {{"milestones", &c.schedule.milestones}, {"gamma", &c.schedule.gamma}}));
    chain(sched.NoUnknownKeys());
  }
  chain(algo.NoUnknownKeys());

  section("data", {{"dataset", &c.dataset}, {"path", &c.data_path}, {"partition", &c.partition},
                   {"alpha", &c.alpha}, {"batch_size", &c.batch_size}, {"test_batch_size", &c.test_batch_size},
                   {"shuffle", &c.shuffle}});
  section("model", {{"name", &c.model}, {"init", &c.init}, {"norm", &c.norm}, {"path", &c.model_path},
                    {"loss", &c.loss}});
  section("checkpoint", {{"enabled", &c.checkpoint_enabled}, {"every_rounds", &c.checkpoint_every_rounds}});
  section("fault", {{"on_peer_loss", &c.on_peer_loss}, {"rejoin_timeout_s", &c.rejoin_timeout_s},
                    {"on_refused_peer", &c.on_refused_peer}});
  if (c.on_refused_peer.empty()) c.on_refused_peer = c.hyper.algorithm == "relaysgd" ? "fail" : "drop";

  // Codec names and "auto" are parsed after every key is read, so the first error is the YAML's.
  std::string codec_name = CodecName(c.codec.kind);
  std::string sparse_values = ValueCodingName(c.codec.sparse_values);
  std::string consensus_step = "auto";
  section("exchange", {{"deadline_s", &c.deadline_s}, {"codec", &codec_name}, {"zstd", &c.codec.zstd},
                       {"zstd_level", &c.codec.zstd_level}, {"topk_fraction", &c.codec.topk_fraction},
                       {"int8_chunk", &c.codec.int8_chunk}, {"sparse_values", &sparse_values},
                       {"lowrank_rank", &c.codec.lowrank_rank}, {"consensus_step", &consensus_step},
                       {"consensus_form", &c.consensus_form}, {"overlap", &c.overlap}});

  chain(top.NoUnknownKeys());
  if (!st.ok()) return st;

  c.schedule.lr0 = c.hyper.lr;
  c.schedule.epochs = c.epochs;
  if (auto kind = ParseCodecKind(codec_name); kind.ok()) {
    c.codec.kind = *kind;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(source, ": exchange.codec: ", kind.status().message()));
  }
  if (auto v = ParseValueCoding(sparse_values); v.ok()) {
    c.codec.sparse_values = *v;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(source, ": exchange.sparse_values: ", v.status().message()));
  }
  c.consensus_step_auto = consensus_step == "auto";
  if (c.consensus_step_auto) {
    c.consensus_step = DefaultConsensusStep(c.codec);
  } else if (!absl::SimpleAtod(consensus_step, &c.consensus_step)) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": exchange.consensus_step: '", consensus_step,
                                                   "' is neither a number in (0, 1] nor auto"));
  }
  c.hyper.overlap = c.overlap != 0;
  if (auto s = ValidateRunConfig(c); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(source, ": ", s.message()));
  }
  c.hyper.direct_consensus =
      c.consensus_form == "direct" || (c.consensus_form == "auto" && c.consensus_step < 1);
  if (c.hyper.algorithm == "d2") {
    // docs/algorithms.md §2.5: D² needs lambda_min(W) > -1/3; at or below it, mix with (I + W)/2.
    c.hyper.lazy_mixing = BuildMixingMatrix(c)->ComputeSpectrum().lambda_min <= -1.0 / 3 + 1e-9;
  }
  return c;
}

}  // namespace

// yaml-cpp throws from deep inside (a conversion of an odd node, a recursion limit); whatever
// escapes the checks above is still an error naming the source, never a crash.
absl::StatusOr<RunConfig> ParseManifest(const std::string& yaml_text, const std::string& source,
                                        const std::vector<std::string>& overrides) {
  try {
    return ParseManifestUnguarded(yaml_text, source, overrides);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, e.mark.is_null() ? "" : absl::StrCat(":", e.mark.line + 1),
                                                   ": cannot read the manifest: ", e.msg));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": cannot read the manifest: ", e.what()));
  }
}

absl::StatusOr<RunConfig> LoadManifest(const std::string& path,
                                       const std::vector<std::string>& overrides) {
  // A regular file within the cap, checked before it is opened: a directory reads as an empty
  // manifest (every default), /dev/zero never ends, and opening a FIFO waits for a writer.
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(st)) return absl::NotFoundError(absl::StrCat("cannot open manifest '", path, "'"));
  if (!std::filesystem::is_regular_file(st)) {
    return absl::InvalidArgumentError(absl::StrCat("manifest '", path, "' is not a regular file"));
  }
  const auto size = std::filesystem::file_size(path, ec);
  if (!ec && size > (1u << 20)) {
    return absl::InvalidArgumentError(absl::StrCat("manifest '", path, "' is ", size, " bytes; a manifest is at most 1 MiB"));
  }
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open manifest '", path, "'"));
  std::string text((1u << 20) + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > (1u << 20)) {
    return absl::InvalidArgumentError(absl::StrCat("manifest '", path, "' is over 1 MiB; a manifest is at most 1 MiB"));
  }
  return ParseManifest(text, path, overrides);
}

absl::StatusOr<MixingMatrix> BuildMixingMatrix(const RunConfig& c) {
  const int n = c.num_agents;
  absl::StatusOr<Graph> g = absl::InvalidArgumentError(
      absl::StrCat("topology.graph: unknown graph '", c.graph, "'; allowed: ", kGraphs));
  if (c.graph == "ring") g = MakeRing(n);
  else if (c.graph == "torus") g = MakeCirculantTorus(n);
  else if (c.graph == "torus2d") {
    if (c.rows * c.cols != n) {
      return absl::InvalidArgumentError(absl::StrCat("topology: torus2d needs rows * cols = agents.count, got ",
                                                     c.rows, " * ", c.cols, " != ", n));
    }
    g = MakeTorus2D(c.rows, c.cols);
  } else if (c.graph == "dyck") g = MakeCodeDyck(n);
  else if (c.graph == "petersen") g = MakePetersen(n);
  else if (c.graph == "full") g = MakeFull(n);
  else if (c.graph == "chain") g = MakeChain(n);
  else if (c.graph == "exponential") g = MakeExponential(n);
  else if (c.graph == "edges") {
    if (c.edges.empty()) return absl::InvalidArgumentError("topology.edges: graph 'edges' needs a non-empty edge list");
    g = Graph::FromEdges("edges", n, c.edges);
  }
  if (!g.ok()) return absl::InvalidArgumentError(absl::StrCat("topology: ", g.status().message()));
  auto rule = ParseWeightRule(c.weights);
  if (!rule.ok()) return absl::InvalidArgumentError(absl::StrCat("topology.weights: ", rule.status().message()));
  MixingMatrix w = MixingMatrix::Build(*g, *rule);
  if (auto s = w.Validate(); !s.ok()) return absl::InvalidArgumentError(absl::StrCat("topology: ", s.message()));
  return w.WithConsensusStep(c.consensus_step);
}

absl::StatusOr<ModelInfo> ModelForRun(const RunConfig& c) {
  auto shape = GetDatasetShape(c.dataset);
  if (!shape.ok()) return shape.status();
  ModelOptions o;
  o.norm = c.norm;
  o.num_classes = shape->num_classes;
  o.input_shape = shape->input;  // empty for npy: the model's own
  auto m = GetModelInfo(c.model, o);
  if (m.ok()) m->loss = c.loss;
  return m;
}

std::string MetricName(const RunConfig& c) { return c.loss == "mse" ? "rmse" : "accuracy"; }

int64_t CheckpointInterval(const RunConfig& c, int64_t rounds_per_epoch) {
  if (!c.checkpoint_enabled) return 0;
  return c.checkpoint_every_rounds > 0 ? c.checkpoint_every_rounds : rounds_per_epoch;
}

std::string ToYaml(const RunConfig& c) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "run" << YAML::Value << YAML::BeginMap << YAML::Key << "name" << YAML::Value << c.name
      << YAML::Key << "seed" << YAML::Value << c.seed << YAML::Key << "epochs" << YAML::Value << c.epochs
      << YAML::Key << "final_gossip_rounds" << YAML::Value << c.final_gossip_rounds << YAML::Key
      << "eval_every" << YAML::Value << c.eval_every << YAML::Key << "threads" << YAML::Value << c.threads;
  // Left out at its default (docs/protocol.md §7, manifest hand-over).
  if (c.numerics != "native") out << YAML::Key << "numerics" << YAML::Value << c.numerics;
  out << YAML::EndMap;
  out << YAML::Key << "agents" << YAML::Value << YAML::BeginMap << YAML::Key << "count" << YAML::Value
      << c.num_agents << YAML::EndMap;
  out << YAML::Key << "topology" << YAML::Value << YAML::BeginMap << YAML::Key << "graph" << YAML::Value
      << c.graph;
  if (c.graph == "torus2d") out << YAML::Key << "rows" << YAML::Value << c.rows << YAML::Key << "cols" << YAML::Value << c.cols;
  if (c.graph == "edges") {
    out << YAML::Key << "edges" << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const auto& [a, b] : c.edges) out << YAML::Flow << YAML::BeginSeq << a << b << YAML::EndSeq;
    out << YAML::EndSeq;
  }
  out << YAML::Key << "weights" << YAML::Value << c.weights << YAML::EndMap;
  out << YAML::Key << "algorithm" << YAML::Value << YAML::BeginMap << YAML::Key << "name" << YAML::Value
      << c.hyper.algorithm << YAML::Key << "lr" << YAML::Value << c.hyper.lr << YAML::Key << "momentum"
      << YAML::Value << c.hyper.momentum << YAML::Key << "mu" << YAML::Value << c.hyper.mu << YAML::Key
      << "nesterov" << YAML::Value << c.hyper.nesterov << YAML::Key << "schedule" << YAML::Value
      << YAML::BeginMap << YAML::Key << "milestones" << YAML::Value << YAML::Flow << c.schedule.milestones
      << YAML::Key << "gamma" << YAML::Value << c.schedule.gamma << YAML::EndMap << YAML::EndMap;
  out << YAML::Key << "data" << YAML::Value << YAML::BeginMap << YAML::Key << "dataset" << YAML::Value
      << c.dataset << YAML::Key << "path" << YAML::Value << c.data_path << YAML::Key << "partition"
      << YAML::Value << c.partition << YAML::Key << "alpha" << YAML::Value << c.alpha << YAML::Key
      << "batch_size" << YAML::Value << c.batch_size << YAML::Key << "test_batch_size" << YAML::Value
      << c.test_batch_size << YAML::Key << "shuffle" << YAML::Value << c.shuffle << YAML::EndMap;
  out << YAML::Key << "model" << YAML::Value << YAML::BeginMap << YAML::Key << "name" << YAML::Value
      << c.model << YAML::Key << "init" << YAML::Value << c.init << YAML::Key << "norm" << YAML::Value
      << c.norm;
  // Left out at their defaults, so that agents of a build without the keys still read runs that do
  // not use them (docs/protocol.md §7, manifest hand-over).
  if (!c.model_path.empty()) out << YAML::Key << "path" << YAML::Value << c.model_path;
  if (c.loss != "cross_entropy") out << YAML::Key << "loss" << YAML::Value << c.loss;
  out << YAML::EndMap;
  out << YAML::Key << "checkpoint" << YAML::Value << YAML::BeginMap << YAML::Key << "enabled" << YAML::Value
      << c.checkpoint_enabled << YAML::Key << "every_rounds" << YAML::Value << c.checkpoint_every_rounds
      << YAML::EndMap;
  out << YAML::Key << "fault" << YAML::Value << YAML::BeginMap << YAML::Key << "on_peer_loss" << YAML::Value
      << c.on_peer_loss << YAML::Key << "rejoin_timeout_s" << YAML::Value << c.rejoin_timeout_s << YAML::Key
      << "on_refused_peer" << YAML::Value << c.on_refused_peer << YAML::EndMap;
  out << YAML::Key << "exchange" << YAML::Value << YAML::BeginMap << YAML::Key << "deadline_s"
      << YAML::Value << c.deadline_s << YAML::Key << "codec" << YAML::Value << CodecName(c.codec.kind)
      << YAML::Key << "zstd" << YAML::Value << c.codec.zstd << YAML::Key << "zstd_level" << YAML::Value
      << c.codec.zstd_level << YAML::Key << "topk_fraction"
      << YAML::Value << c.codec.topk_fraction << YAML::Key << "sparse_values" << YAML::Value
      << ValueCodingName(c.codec.sparse_values) << YAML::Key << "lowrank_rank" << YAML::Value << c.codec.lowrank_rank
      << YAML::Key << "int8_chunk" << YAML::Value << c.codec.int8_chunk << YAML::Key << "consensus_step"
      << YAML::Value << c.consensus_step;
  // Left out at its default, so that agents of a build without the key still read runs that do not
  // use it (docs/protocol.md §7, manifest hand-over).
  if (c.consensus_form != "auto") out << YAML::Key << "consensus_form" << YAML::Value << c.consensus_form;
  if (c.overlap != 0) out << YAML::Key << "overlap" << YAML::Value << c.overlap;
  out << YAML::EndMap;
  out << YAML::EndMap;
  return out.c_str();
}

}  // namespace gut::core
