# The Quiver servers and the benchmark client. User data (templates/) builds
# or downloads the binaries at first boot; a server then runs quiver-server
# as a systemd service and answers /ready on the admin port.

resource "aws_key_pair" "operator" {
  key_name_prefix = "${local.name}-"
  public_key      = trimspace(var.ssh_public_key)
}

resource "aws_instance" "server" {
  #checkov:skip=CKV_AWS_88:A public address is how the operator reaches SSH (limited to operator_cidr) and how the node downloads packages and the toolchain without a NAT gateway; the Flight and admin ports admit only members of the rig's security group.
  count = var.server_count

  ami                         = local.ami_id
  instance_type               = var.instance_type
  subnet_id                   = aws_subnet.public.id
  private_ip                  = local.server_ips[count.index]
  vpc_security_group_ids      = [aws_security_group.rig.id]
  associate_public_ip_address = true
  key_name                    = aws_key_pair.operator.key_name
  iam_instance_profile        = aws_iam_instance_profile.server.name
  monitoring                  = true
  ebs_optimized               = true

  user_data                   = local.server_user_data[count.index]
  user_data_replace_on_change = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size
    encrypted             = true
    delete_on_termination = true
  }

  tags = {
    Name = "${local.name}-server-${count.index}"
    Role = "quiver-server"
  }

  lifecycle {
    # A newer AMI must not replace running nodes (and their warm caches).
    ignore_changes = [ami]

    precondition {
      condition     = var.quiver_repo_url != "" || var.quiver_binary_url != ""
      error_message = "Set quiver_repo_url (build from source) or quiver_binary_url (download prebuilt binaries)."
    }

    precondition {
      # The servers take the subnet's addresses from the fifth on, the
      # client the last usable one (main.tf).
      condition     = 4 + var.server_count < pow(2, 32 - tonumber(split("/", local.subnet_cidr)[1])) - 2
      error_message = "The subnet is too small for server_count servers and the client; use a larger vpc_cidr."
    }

    precondition {
      condition     = contains(data.aws_ec2_instance_type.server.supported_architectures, var.architecture)
      error_message = "instance_type does not support the AMI architecture; set architecture to match it (x86_64 or arm64)."
    }

    precondition {
      condition     = !var.use_instance_store || data.aws_ec2_instance_type.server.instance_storage_supported
      error_message = "use_instance_store = true needs an instance_type with NVMe instance store, such as c5d.xlarge."
    }
  }

  # The instance profile's policy must exist before the node first reads S3.
  depends_on = [aws_iam_role_policy.server, aws_route_table_association.public, aws_vpc_endpoint.s3]
}

resource "aws_instance" "client" {
  #checkov:skip=CKV_AWS_88:A public address is how the operator (and infra/ec2-bench.sh) reaches SSH, limited to operator_cidr, and how the client downloads packages and the toolchain without a NAT gateway.
  ami                         = local.ami_id
  instance_type               = var.client_instance_type
  subnet_id                   = aws_subnet.public.id
  private_ip                  = local.client_ip
  vpc_security_group_ids      = [aws_security_group.rig.id]
  associate_public_ip_address = true
  key_name                    = aws_key_pair.operator.key_name
  iam_instance_profile        = aws_iam_instance_profile.client.name
  monitoring                  = true
  ebs_optimized               = true

  user_data                   = local.client_user_data
  user_data_replace_on_change = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size
    encrypted             = true
    delete_on_termination = true
  }

  tags = {
    Name = "${local.name}-client"
    Role = "quiver-bench-client"
  }

  lifecycle {
    ignore_changes = [ami]

    precondition {
      condition     = var.quiver_repo_url != "" || var.quiver_binary_url != ""
      error_message = "Set quiver_repo_url (build from source) or quiver_binary_url (download prebuilt binaries)."
    }

    precondition {
      condition     = contains(data.aws_ec2_instance_type.client.supported_architectures, var.architecture)
      error_message = "client_instance_type does not support the AMI architecture; set architecture to match it (x86_64 or arm64)."
    }
  }

  depends_on = [aws_iam_role_policy.client, aws_route_table_association.public, aws_vpc_endpoint.s3]
}
