# One VPC with one public subnet. Every instance gets a public address so the
# operator can SSH in and the instances can fetch packages, the Rust
# toolchain and crates; S3 traffic goes through a gateway endpoint instead of
# the internet gateway.

resource "aws_vpc" "rig" {
  #checkov:skip=CKV2_AWS_11:Short-lived benchmark VPC that is destroyed after each run; flow logs would add a log group, a role and cost without helping the measurement, and the security group already admits only the operator's CIDR and its own members.
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = {
    Name = "${local.name}-vpc"
  }
}

# The VPC's default security group is not used by anything; strip its rules
# so nothing launched into it by hand is reachable.
resource "aws_default_security_group" "rig" {
  vpc_id = aws_vpc.rig.id

  tags = {
    Name = "${local.name}-default-unused"
  }
}

resource "aws_subnet" "public" {
  vpc_id            = aws_vpc.rig.id
  cidr_block        = local.subnet_cidr
  availability_zone = local.availability_zone

  # Public addresses are requested per instance (associate_public_ip_address)
  # instead of for everything launched into the subnet.
  map_public_ip_on_launch = false

  tags = {
    Name = "${local.name}-public"
  }

  lifecycle {
    precondition {
      condition     = local.availability_zone != ""
      error_message = "No availability zone of the region offers both instance_type and client_instance_type; pick other types or set availability_zone."
    }
  }
}

resource "aws_internet_gateway" "rig" {
  vpc_id = aws_vpc.rig.id

  tags = {
    Name = "${local.name}-igw"
  }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.rig.id

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.rig.id
  }

  tags = {
    Name = "${local.name}-public"
  }
}

resource "aws_route_table_association" "public" {
  subnet_id      = aws_subnet.public.id
  route_table_id = aws_route_table.public.id
}

# S3 in the same region through the VPC's route table: no internet gateway
# hop between the nodes (or the client) and the bucket.
resource "aws_vpc_endpoint" "s3" {
  vpc_id            = aws_vpc.rig.id
  service_name      = "com.amazonaws.${var.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.public.id]

  tags = {
    Name = "${local.name}-s3"
  }
}

# ---------------------------------------------------------------------------
# Security group shared by the servers and the client
# ---------------------------------------------------------------------------

resource "aws_security_group" "rig" {
  name_prefix = "${local.name}-"
  description = "Quiver benchmark rig: Flight and admin ports between members, SSH from the operator"
  vpc_id      = aws_vpc.rig.id

  tags = {
    Name = "${local.name}-rig"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "ssh_from_operator" {
  security_group_id = aws_security_group.rig.id
  description       = "SSH from the operator's CIDR"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = var.operator_cidr
}

resource "aws_vpc_security_group_ingress_rule" "flight_from_members" {
  security_group_id            = aws_security_group.rig.id
  description                  = "Arrow Flight between members of this group"
  ip_protocol                  = "tcp"
  from_port                    = var.flight_port
  to_port                      = var.flight_port
  referenced_security_group_id = aws_security_group.rig.id
}

resource "aws_vpc_security_group_ingress_rule" "admin_from_members" {
  security_group_id            = aws_security_group.rig.id
  description                  = "Quiver admin (metrics, health, ready) between members of this group"
  ip_protocol                  = "tcp"
  from_port                    = var.admin_port
  to_port                      = var.admin_port
  referenced_security_group_id = aws_security_group.rig.id
}

resource "aws_vpc_security_group_egress_rule" "flight_to_members" {
  security_group_id            = aws_security_group.rig.id
  description                  = "Arrow Flight to members of this group"
  ip_protocol                  = "tcp"
  from_port                    = var.flight_port
  to_port                      = var.flight_port
  referenced_security_group_id = aws_security_group.rig.id
}

resource "aws_vpc_security_group_egress_rule" "admin_to_members" {
  security_group_id            = aws_security_group.rig.id
  description                  = "Quiver admin (metrics, health, ready) to members of this group"
  ip_protocol                  = "tcp"
  from_port                    = var.admin_port
  to_port                      = var.admin_port
  referenced_security_group_id = aws_security_group.rig.id
}

# HTTPS: S3 (through the endpoint), rustup, crates.io, git, package mirrors.
resource "aws_vpc_security_group_egress_rule" "https" {
  security_group_id = aws_security_group.rig.id
  description       = "HTTPS to S3, package mirrors, rustup, crates.io and git hosts"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

# HTTP: the distributions' package mirrors (apt verifies packages by
# signature, not by transport).
resource "aws_vpc_security_group_egress_rule" "http" {
  security_group_id = aws_security_group.rig.id
  description       = "HTTP to the distribution package mirrors"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = "0.0.0.0/0"
}
