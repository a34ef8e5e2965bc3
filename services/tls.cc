#include "services/tls.h"

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/common/atomic_file.h"

namespace gut::services {

std::string CommonName(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return "";
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (cert == nullptr) return "";
  std::string cn;
  X509_NAME* name = X509_get_subject_name(cert);
  const int at = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (at >= 0) {
    ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, at));
    cn.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(data)), static_cast<size_t>(ASN1_STRING_length(data)));
  }
  X509_free(cert);
  return cn;
}

const char* RoleName(Role r) {
  switch (r) {
    case Role::kAgent: return "agent";
    case Role::kCoordinator: return "coordinator";
    case Role::kNone: break;
  }
  return "none";
}

CertificateRole ParseRoleUri(const std::string& uri) {
  constexpr absl::string_view kPrefix = "spiffe://gut/";
  CertificateRole r;
  if (!absl::StartsWith(uri, kPrefix)) return r;
  const absl::string_view path = absl::string_view(uri).substr(kPrefix.size());
  if (path == "coordinator") {
    r.role = Role::kCoordinator;
  } else if (path == "agent") {
    r.role = Role::kAgent;
  } else if (absl::StartsWith(path, "agent/rank/")) {
    const absl::string_view k = path.substr(11);
    int rank = -1;
    // Digits only: "+3", " 3" and "03" would let two certificates name one rank differently.
    if (!k.empty() && k.size() <= 9 && k.find_first_not_of("0123456789") == absl::string_view::npos &&
        (k.size() == 1 || k[0] != '0') && absl::SimpleAtoi(k, &rank)) {
      r.role = Role::kAgent;
      r.rank = rank;
    }
  }
  return r;
}

CertificateRole RoleOfPem(const std::string& pem) {
  CertificateRole out;
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return out;
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (cert == nullptr) return out;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(names, i);
    if (g->type != GEN_URI) continue;
    const ASN1_IA5STRING* u = g->d.uniformResourceIdentifier;
    const CertificateRole r = ParseRoleUri(
        std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(u)), static_cast<size_t>(ASN1_STRING_length(u))));
    if (r.role != Role::kNone) {
      out = r;
      break;
    }
  }
  GENERAL_NAMES_free(names);
  X509_free(cert);
  return out;
}

CertificateRole RoleOfPeer(const grpc::AuthContext* auth) {
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return {};
  for (const auto& v : auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME)) {
    return RoleOfPem(std::string(v.data(), v.size()));
  }
  return {};
}

std::string DescribeRole(const CertificateRole& r) {
  switch (r.role) {
    case Role::kCoordinator: return "the coordinator role";
    case Role::kAgent: return r.rank < 0 ? "the agent role" : absl::StrCat("the agent role bound to rank ", r.rank);
    case Role::kNone: break;
  }
  return "no gut role (no spiffe://gut/... URI)";
}

absl::Status RequireOwnRole(const TlsMaterial& tls, Role want, const std::string& cert_path) {
  if (tls.role.role == want) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "--tls-cert: ", cert_path, " has ", DescribeRole(tls.role), "; this daemon needs a certificate with the ",
      RoleName(want), " role (a URI subject alternative name spiffe://gut/",
      want == Role::kCoordinator ? "coordinator" : "agent or spiffe://gut/agent/rank/K",
      "; deploy/local/make-certs.sh writes it)"));
}

absl::StatusOr<TlsMaterial> LoadTls(const TlsFiles& f, Role role) {
  if (f.ca.empty() || f.cert.empty() || f.key.empty()) {
    return absl::InvalidArgumentError("TLS needs all three of --tls-ca, --tls-cert and --tls-key");
  }
  TlsMaterial m;
  for (const auto& [flag, path, into] : {std::tuple<const char*, const std::string&, std::string*>{"--tls-ca", f.ca, &m.ca},
                                         {"--tls-cert", f.cert, &m.cert},
                                         {"--tls-key", f.key, &m.key}}) {
    auto text = core::ReadWholeFile(path);
    if (!text.ok()) return absl::InvalidArgumentError(absl::StrCat(flag, ": ", text.status().message()));
    if (!absl::StrContains(*text, "-----BEGIN ")) {
      return absl::InvalidArgumentError(absl::StrCat(flag, ": ", path, " is not a PEM file"));
    }
    *into = std::move(*text);
  }
  m.identity = CommonName(m.cert);
  if (m.identity.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--tls-cert: ", f.cert, " has no common name (the agent's name)"));
  }
  m.role = RoleOfPem(m.cert);
  if (role != Role::kNone) {
    if (auto s = RequireOwnRole(m, role, f.cert); !s.ok()) return s;
  }
  return m;
}

std::shared_ptr<grpc::ServerCredentials> ServerCredentials(const TlsMaterial* tls) {
  if (tls == nullptr) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions o(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  o.pem_root_certs = tls->ca;
  o.pem_key_cert_pairs.push_back({tls->key, tls->cert});
  return grpc::SslServerCredentials(o);
}

std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials(const TlsMaterial* tls) {
  if (tls == nullptr) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = tls->ca;
  o.pem_private_key = tls->key;
  o.pem_cert_chain = tls->cert;
  return grpc::SslCredentials(o);
}

bool IsLoopback(const std::string& address) {
  std::string host = address.substr(0, address.rfind(':'));
  if (!host.empty() && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}

absl::Status RequireSecureListen(const std::string& flag, const std::string& address, bool tls, bool insecure) {
  if (tls || IsLoopback(address) || insecure) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      flag, " ", address, " is not a loopback address and no TLS files are given: anyone on the network could "
      "join, read and forge this run's traffic. Give --tls-ca, --tls-cert and --tls-key, or --insecure to accept "
      "that"));
}

absl::Status RequirePublicFlag(const std::string& metrics, const std::string& health_listen, bool public_metrics) {
  for (const auto& [flag, address] : {std::pair<const char*, const std::string&>{"--metrics", metrics},
                                      {"--health-listen", health_listen}}) {
    if (address.empty() || public_metrics || IsLoopback(address)) continue;
    return absl::InvalidArgumentError(absl::StrCat(
        flag, " ", address, " is not a loopback address: this endpoint has no authentication, so anyone who can "
        "reach it reads the run's metrics, agent names and status. Give --public-metrics to serve it there anyway "
        "(behind a network policy or a firewall), or a loopback address"));
  }
  return absl::OkStatus();
}

}  // namespace gut::services
