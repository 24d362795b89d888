# Plan/apply tests of the rig against a mocked AWS provider: no account, no
# credentials and no network are needed, only terraform >= 1.7 and the aws
# provider plugin. infra/check-terraform.sh runs them when both are present.

# The CA, certificates and tokens are made by these providers; mocked, they
# give placeholder values.
mock_provider "tls" {}
mock_provider "random" {}

mock_provider "aws" {
  mock_resource "aws_s3_bucket" {
    defaults = {
      bucket = "quiver-bench-test"
      arn    = "arn:aws:s3:::quiver-bench-test"
    }
  }

  mock_resource "aws_instance" {
    defaults = {
      private_ip = "10.42.0.10"
      public_ip  = "198.51.100.10"
    }
  }

  mock_data "aws_ec2_instance_type_offerings" {
    defaults = {
      # Out of name order, with a Local Zone that must never be picked.
      locations = ["us-east-1b", "us-east-1-bos-1a", "us-east-1a"]
    }
  }

  mock_data "aws_ec2_instance_type" {
    defaults = {
      supported_architectures    = ["x86_64", "i386"]
      instance_storage_supported = false
    }
  }

  # The provider still validates policy arguments, so the mocked documents
  # must be JSON objects. The real documents are checked by checkov.
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }

  mock_data "aws_ami" {
    defaults = {
      id = "ami-0123456789abcdef0"
    }
  }
}

variables {
  operator_cidr   = "203.0.113.7/32"
  ssh_public_key  = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3Qta2V5LW9ubHktZm9yLXBsYW4tdGVzdHM test@example"
  quiver_repo_url = "https://example.com/quiver.git"
}

run "defaults" {
  command = apply

  assert {
    condition     = length(aws_instance.server) == 3
    error_message = "three servers by default"
  }

  assert {
    condition     = alltrue([for s in aws_instance.server : s.instance_type == "c5.xlarge" && s.monitoring && s.ebs_optimized])
    error_message = "servers are c5.xlarge, monitored and EBS optimized"
  }

  assert {
    condition = alltrue([
      for s in concat(aws_instance.server, [aws_instance.client]) :
      s.metadata_options[0].http_tokens == "required" && s.root_block_device[0].encrypted
    ])
    error_message = "every instance requires IMDSv2 and has an encrypted root volume"
  }

  assert {
    condition     = aws_subnet.public.availability_zone == "us-east-1a"
    error_message = "the first regular zone offering both types is picked"
  }

  assert {
    condition     = aws_subnet.public.cidr_block == "10.42.0.0/24"
    error_message = "the subnet is the VPC's first /24"
  }

  assert {
    condition     = aws_vpc_security_group_ingress_rule.ssh_from_operator.cidr_ipv4 == "203.0.113.7/32"
    error_message = "SSH is open to operator_cidr only"
  }

  assert {
    condition = (
      aws_vpc_security_group_ingress_rule.flight_from_members.referenced_security_group_id == aws_security_group.rig.id
      && aws_vpc_security_group_ingress_rule.flight_from_members.from_port == 50051
      && aws_vpc_security_group_ingress_rule.admin_from_members.referenced_security_group_id == aws_security_group.rig.id
      && aws_vpc_security_group_ingress_rule.admin_from_members.from_port == 9090
    )
    error_message = "Flight and admin ports are open to members of the group only"
  }

  assert {
    condition     = output.flight_urls == ["grpc+tls://10.42.0.4:50051", "grpc+tls://10.42.0.5:50051", "grpc+tls://10.42.0.6:50051"]
    error_message = "one TLS Flight URL per server, at its fixed address"
  }

  assert {
    condition     = output.data_url == "s3://quiver-bench-test/data/" && output.ssh_user == "admin"
    error_message = "bench prefix and Debian's SSH user"
  }

  assert {
    condition = alltrue([
      for want in [
        "listen = \"0.0.0.0:50051\"",
        "admin_listen = \"0.0.0.0:9090\"",
        "advertise = \"$SCHEME://$PRIVATE_IP:50051\"",
        "PRIVATE_IP='10.42.0.4'",
        "TLS='true'",
        "peer_token_file = \"/etc/quiver/peer-token\"",
        "tls_ca = \"/etc/quiver/tls/ca.pem\"",
        "topology = \"s3://quiver-bench-test/cluster/topology.json\"",
        "memory = \"1GiB\"",
        "disk_dir = \"/var/lib/quiver/cache\"",
        "name = \"lake\"",
        "url = \"s3://quiver-bench-test/data/\"",
        "region = \"us-east-1\"",
        "node_id = \"$INSTANCE_ID\"",
        "USE_INSTANCE_STORE='false'",
        "CACHE_DISK='auto'",
        "QUIVER_REPO_URL='https://example.com/quiver.git'",
        "QUIVER_REF='main'",
        "install_quiver quiver-server",
        "\"$${args[@]}\"",
      ] : strcontains(local.server_user_data[0], want)
    ])
    error_message = "the server user data writes the README's configuration keys"
  }

  assert {
    condition     = length(regexall("%[{]", local.server_user_data[0])) == 0 && !strcontains(local.server_user_data[0], "access_key")
    error_message = "no template directives or credentials in the user data"
  }

  assert {
    condition     = strcontains(local.client_user_data, "install_quiver quiver-bench quiver-server")
    error_message = "the client builds quiver-bench and quiver-server"
  }
}

run "without_tls" {
  command = plan

  variables {
    tls = false
  }

  assert {
    condition = (
      strcontains(local.server_user_data[0], "TLS='false'")
      && length(tls_locally_signed_cert.node) == 0
      && length(random_password.token) == 0
    )
    error_message = "tls = false makes no certificates or tokens"
  }
}

run "subnet_too_small" {
  command = plan

  variables {
    vpc_cidr     = "10.42.0.0/28"
    server_count = 12
  }

  expect_failures = [aws_instance.server]
}

run "instance_store" {
  command = plan

  variables {
    instance_type      = "c5d.xlarge"
    use_instance_store = true
    server_count       = 1
  }

  override_data {
    target = data.aws_ec2_instance_type.server
    values = {
      supported_architectures    = ["x86_64"]
      instance_storage_supported = true
    }
  }

  assert {
    condition     = strcontains(local.server_user_data[0], "USE_INSTANCE_STORE='true'") && length(aws_instance.server) == 1
    error_message = "the instance store is prepared when asked for"
  }
}

run "instance_store_needs_a_type_with_one" {
  command = plan

  variables {
    use_instance_store = true
  }

  expect_failures = [aws_instance.server]
}

run "architecture_must_match_the_types" {
  command = plan

  variables {
    architecture = "arm64"
  }

  expect_failures = [aws_instance.server, aws_instance.client]
}

run "a_zone_must_offer_both_types" {
  command = plan

  override_data {
    target = data.aws_ec2_instance_type_offerings.client
    values = {
      locations = ["us-east-1c"]
    }
  }

  expect_failures = [aws_subnet.public]
}

run "source_or_binary_is_required" {
  command = plan

  variables {
    quiver_repo_url = ""
  }

  expect_failures = [aws_instance.server, aws_instance.client]
}

run "prebuilt_binaries" {
  command = plan

  variables {
    quiver_repo_url      = ""
    quiver_binary_url    = "https://example.com/quiver.tar.gz"
    quiver_binary_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
    os                   = "ubuntu-22.04"
  }

  assert {
    condition     = strcontains(local.common_user_data, "QUIVER_BINARY_URL='https://example.com/quiver.tar.gz'") && local.ssh_user == "ubuntu"
    error_message = "prebuilt binaries on Ubuntu"
  }
}

run "operator_cidr_rejects_the_world" {
  command = plan

  variables {
    operator_cidr = "0.0.0.0/0"
  }

  expect_failures = [var.operator_cidr]
}

run "operator_cidr_rejects_any_slash_zero" {
  command = plan

  variables {
    operator_cidr = "203.0.113.7/0"
  }

  expect_failures = [var.operator_cidr]
}

run "operator_cidr_must_be_canonical" {
  command = plan

  variables {
    operator_cidr = "203.0.113.7/24"
  }

  expect_failures = [var.operator_cidr]
}

run "operator_cidr_must_be_a_cidr" {
  command = plan

  variables {
    operator_cidr = "my-laptop"
  }

  expect_failures = [var.operator_cidr]
}

run "topology_key_outside_data" {
  command = plan

  variables {
    topology_key = "data/topology.json"
  }

  expect_failures = [var.topology_key]
}

run "topology_key_needs_a_folder" {
  command = plan

  variables {
    topology_key = "topology.json"
  }

  expect_failures = [var.topology_key]
}

run "repo_url_must_be_https" {
  command = plan

  variables {
    quiver_repo_url = "git@github.com:example/quiver.git"
  }

  expect_failures = [var.quiver_repo_url]
}
