# TLS and credentials of the rig, on by default (var.tls). Terraform makes a
# CA, one certificate per server for its fixed private address, and the
# three tokens of docs/operations.md ("TLS and credentials on a real
# network"): readers', the admin's and the one nodes present to each other.
# They reach the instances in their user data, which IMDSv2 (tokens
# required, hop limit 1) serves only to processes on the instance itself;
# the node writes them to /etc/quiver readable by root and the quiver group
# only. The Terraform state holds the private keys and tokens too: keep it
# encrypted (an S3 backend with encryption, for instance).

resource "random_password" "token" {
  for_each = var.tls ? toset(["reader", "admin", "peer"]) : toset([])

  length  = 40
  special = false
}

resource "tls_private_key" "ca" {
  count = var.tls ? 1 : 0

  algorithm   = "ECDSA"
  ecdsa_curve = "P256"
}

resource "tls_self_signed_cert" "ca" {
  count = var.tls ? 1 : 0

  private_key_pem       = tls_private_key.ca[0].private_key_pem
  is_ca_certificate     = true
  validity_period_hours = var.tls_validity_hours
  allowed_uses          = ["cert_signing", "crl_signing"]

  subject {
    common_name  = "${local.name} CA"
    organization = "Quiver benchmark rig"
  }
}

resource "tls_private_key" "node" {
  count = var.tls ? var.server_count : 0

  algorithm   = "ECDSA"
  ecdsa_curve = "P256"
}

resource "tls_cert_request" "node" {
  count = var.tls ? var.server_count : 0

  private_key_pem = tls_private_key.node[count.index].private_key_pem
  ip_addresses    = [local.server_ips[count.index]]

  subject {
    common_name  = local.server_ips[count.index]
    organization = "Quiver benchmark rig"
  }
}

resource "tls_locally_signed_cert" "node" {
  count = var.tls ? var.server_count : 0

  cert_request_pem      = tls_cert_request.node[count.index].cert_request_pem
  ca_private_key_pem    = tls_private_key.ca[0].private_key_pem
  ca_cert_pem           = tls_self_signed_cert.ca[0].cert_pem
  validity_period_hours = var.tls_validity_hours
  # A node serves with it and presents it when it calls its peers.
  allowed_uses = ["digital_signature", "key_encipherment", "server_auth", "client_auth"]
}

locals {
  ca_cert_pem = var.tls ? tls_self_signed_cert.ca[0].cert_pem : ""
  tokens      = { for k in ["reader", "admin", "peer"] : k => var.tls ? random_password.token[k].result : "" }
}
