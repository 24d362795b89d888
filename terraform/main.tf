# Shared values and look-ups of the EC2 benchmark rig. The resources live in
# network.tf, s3.tf, iam.tf and instances.tf; outputs.tf lists what
# infra/ec2-bench.sh reads back.

locals {
  name = var.name_prefix

  # The servers serve everything under data/ as one source; the benchmark
  # writes its generated data below data/quiver-bench/.
  data_prefix = "data/"

  vpc_prefix_length = tonumber(split("/", var.vpc_cidr)[1])
  subnet_cidr       = local.vpc_prefix_length < 24 ? cidrsubnet(var.vpc_cidr, 24 - local.vpc_prefix_length, 0) : var.vpc_cidr

  # Without an explicit zone: the first regular zone (not a Local Zone) that
  # offers both instance types, so c5d and friends land where they exist.
  offered_zones = sort([
    for zone in setintersection(
      data.aws_ec2_instance_type_offerings.server.locations,
      data.aws_ec2_instance_type_offerings.client.locations,
    ) : zone if can(regex("^${var.region}[a-z]$", zone))
  ])
  availability_zone = var.availability_zone != "" ? var.availability_zone : try(local.offered_zones[0], "")

  # Official images: Debian's account and Canonical's account.
  ami_filters = {
    "debian-12" = {
      owner = "136693071363"
      name  = "debian-12-${var.architecture == "arm64" ? "arm64" : "amd64"}-*"
      user  = "admin"
    }
    "ubuntu-22.04" = {
      owner = "099720109477"
      name  = "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-${var.architecture == "arm64" ? "arm64" : "amd64"}-server-*"
      user  = "ubuntu"
    }
  }
  ami_id   = var.ami_id != "" ? var.ami_id : data.aws_ami.os[0].id
  ssh_user = local.ami_filters[var.os].user

  # Shell fragment shared by both user-data scripts: toolchain, source or
  # prebuilt binaries, and the failure marker that infra/ec2-bench.sh watches.
  common_user_data = templatefile("${path.module}/templates/common.sh.tftpl", {
    repo_url      = var.quiver_repo_url
    ref           = var.quiver_ref
    binary_url    = var.quiver_binary_url
    binary_sha256 = var.quiver_binary_sha256
  })

  # Fixed private addresses, so each server's certificate can name its own
  # before the instance exists: the servers from the subnet's fifth address
  # on (AWS keeps the first four), the client at the last usable one.
  server_ips = [for i in range(var.server_count) : cidrhost(local.subnet_cidr, 4 + i)]
  client_ip  = cidrhost(local.subnet_cidr, -2)
  scheme     = var.tls ? "grpc+tls" : "grpc"

  server_user_data = [for i in range(var.server_count) : templatefile("${path.module}/templates/server.sh.tftpl", {
    common             = local.common_user_data
    region             = var.region
    bucket             = aws_s3_bucket.data.bucket
    data_prefix        = local.data_prefix
    source_name        = var.source_name
    flight_port        = var.flight_port
    admin_port         = var.admin_port
    cache_memory       = var.cache_memory
    cache_disk         = var.cache_disk
    use_instance_store = var.use_instance_store
    topology_key       = var.topology_key
    private_ip         = local.server_ips[i]
    tls                = var.tls
    ca_cert            = local.ca_cert_pem
    node_cert          = var.tls ? tls_locally_signed_cert.node[i].cert_pem : ""
    node_key           = var.tls ? tls_private_key.node[i].private_key_pem : ""
    reader_token       = local.tokens.reader
    admin_token        = local.tokens.admin
    peer_token         = local.tokens.peer
    # `quiver-bench tpch` compares statements sent to the first server (in
    # distributed stages) with the second (one coordinator).
    sql_distributed = i == 1 ? "off" : "on"
  })]

  # The benchmark evicts between runs, so the client holds the admin token
  # (which reads too) and the CA.
  client_user_data = templatefile("${path.module}/templates/client.sh.tftpl", {
    common      = local.common_user_data
    region      = var.region
    bucket      = aws_s3_bucket.data.bucket
    data_prefix = local.data_prefix
    source_name = var.source_name
    tls         = var.tls
    ca_cert     = local.ca_cert_pem
    admin_token = local.tokens.admin
    ssh_user    = local.ssh_user
  })
}

data "aws_ec2_instance_type_offerings" "server" {
  location_type = "availability-zone"

  filter {
    name   = "instance-type"
    values = [var.instance_type]
  }
}

data "aws_ec2_instance_type_offerings" "client" {
  location_type = "availability-zone"

  filter {
    name   = "instance-type"
    values = [var.client_instance_type]
  }
}

data "aws_ami" "os" {
  count       = var.ami_id == "" ? 1 : 0
  most_recent = true
  owners      = [local.ami_filters[var.os].owner]

  filter {
    name   = "name"
    values = [local.ami_filters[var.os].name]
  }

  filter {
    name   = "architecture"
    values = [var.architecture]
  }

  filter {
    name   = "virtualization-type"
    values = ["hvm"]
  }

  filter {
    name   = "root-device-type"
    values = ["ebs"]
  }
}

# Used by the instances' preconditions: the AMI's architecture must suit
# both types, and use_instance_store needs a type that has instance store.
data "aws_ec2_instance_type" "server" {
  instance_type = var.instance_type
}

data "aws_ec2_instance_type" "client" {
  instance_type = var.client_instance_type
}
