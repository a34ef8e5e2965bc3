#include "services/tls.h"

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "absl/strings/match.h"
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

absl::StatusOr<TlsMaterial> LoadTls(const TlsFiles& f) {
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
