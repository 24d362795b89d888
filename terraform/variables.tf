# Inputs of the EC2 benchmark rig. Every variable is described in README.md;
# only operator_cidr and ssh_public_key have no default, plus one of
# quiver_repo_url / quiver_binary_url must be set.

# ---------------------------------------------------------------------------
# Where and who
# ---------------------------------------------------------------------------

variable "region" {
  description = "AWS region for every resource (the bucket, the VPC and the instances)."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as us-east-1 or eu-west-2."
  }
}

variable "availability_zone" {
  description = "Availability zone of the subnet. Empty picks the first zone (in name order) that offers both instance_type and client_instance_type."
  type        = string
  default     = ""

  validation {
    condition     = var.availability_zone == "" || can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9][a-z]$", var.availability_zone))
    error_message = "availability_zone must be empty or a zone name such as us-east-1a."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name (and of the bucket name when bucket_name is empty)."
  type        = string
  default     = "quiver-bench"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,23}$", var.name_prefix))
    error_message = "name_prefix must be 2 to 24 characters: lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "tags" {
  description = "Extra tags put on every resource (merged into the provider's default tags)."
  type        = map(string)
  default     = {}
}

variable "operator_cidr" {
  description = "IPv4 CIDR allowed to reach SSH (port 22) on every instance, e.g. your public address as 203.0.113.7/32. The Flight and admin ports are never opened to it."
  type        = string

  validation {
    condition = (
      can(regex("^[0-9]{1,3}(\\.[0-9]{1,3}){3}/[0-9]{1,2}$", var.operator_cidr))
      && try(cidrsubnet(var.operator_cidr, 0, 0) == var.operator_cidr, false)
      && try(tonumber(split("/", var.operator_cidr)[1]) > 0, false)
    )
    error_message = "operator_cidr must be an IPv4 CIDR in canonical form (network address, e.g. 203.0.113.7/32 or 198.51.100.0/24) and must not be 0.0.0.0/0 or any other /0."
  }
}

variable "ssh_public_key" {
  description = "OpenSSH public key (the text of a .pub file) installed for the AMI's default user on every instance."
  type        = string

  validation {
    condition     = can(regex("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\\.com|sk-ecdsa-sha2-nistp256@openssh\\.com) [A-Za-z0-9+/=]+( [^\\n]*)?\\n?$", var.ssh_public_key))
    error_message = "ssh_public_key must be one OpenSSH public key line, e.g. the contents of ~/.ssh/id_ed25519.pub."
  }
}

# ---------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------

variable "vpc_cidr" {
  description = "IPv4 CIDR of the rig's VPC; the public subnet is its first /24 (or the whole block when it is /24 or smaller)."
  type        = string
  default     = "10.42.0.0/16"

  validation {
    condition = (
      try(cidrsubnet(var.vpc_cidr, 0, 0) == var.vpc_cidr, false)
      && try(tonumber(split("/", var.vpc_cidr)[1]) >= 16 && tonumber(split("/", var.vpc_cidr)[1]) <= 28, false)
    )
    error_message = "vpc_cidr must be an IPv4 CIDR in canonical form with a prefix length between /16 and /28."
  }
}

variable "flight_port" {
  description = "TCP port of Arrow Flight on the servers; open only to members of the rig's security group."
  type        = number
  default     = 50051

  validation {
    condition     = var.flight_port >= 1024 && var.flight_port <= 65535 && floor(var.flight_port) == var.flight_port
    error_message = "flight_port must be an integer between 1024 and 65535."
  }
}

variable "admin_port" {
  description = "TCP port of the admin endpoints (/metrics, /health, /ready) on the servers; open only to members of the rig's security group."
  type        = number
  default     = 9090

  validation {
    condition     = var.admin_port >= 1024 && var.admin_port <= 65535 && floor(var.admin_port) == var.admin_port
    error_message = "admin_port must be an integer between 1024 and 65535."
  }
}

# ---------------------------------------------------------------------------
# Instances
# ---------------------------------------------------------------------------

variable "server_count" {
  description = "Number of Quiver server instances."
  type        = number
  default     = 3

  validation {
    condition     = var.server_count >= 1 && var.server_count <= 32 && floor(var.server_count) == var.server_count
    error_message = "server_count must be an integer between 1 and 32."
  }
}

variable "instance_type" {
  description = "EC2 type of the servers. NVMe instance-store types such as c5d.xlarge add a local disk for the cache's disk tier (set use_instance_store = true to use it)."
  type        = string
  default     = "c5.xlarge"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must be an EC2 instance type such as c5.xlarge."
  }
}

variable "client_instance_type" {
  description = "EC2 type of the benchmark client instance."
  type        = string
  default     = "c5.xlarge"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.client_instance_type))
    error_message = "client_instance_type must be an EC2 instance type such as c5.xlarge."
  }
}

variable "os" {
  description = "Operating system of every instance: debian-12 (SSH user admin) or ubuntu-22.04 (SSH user ubuntu)."
  type        = string
  default     = "debian-12"

  validation {
    condition     = contains(["debian-12", "ubuntu-22.04"], var.os)
    error_message = "os must be debian-12 or ubuntu-22.04."
  }
}

variable "architecture" {
  description = "CPU architecture of the AMI: x86_64 (c5, c5d, ...) or arm64 (Graviton: c7g, c7gd, ...). It must match both instance types."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "ami_id" {
  description = "Explicit AMI id; empty looks up the newest official image of var.os for var.architecture. The instances ignore later AMI changes, so a newer image never replaces running instances."
  type        = string
  default     = ""

  validation {
    condition     = var.ami_id == "" || can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must be empty or an AMI id such as ami-0123456789abcdef0."
  }
}

variable "root_volume_size" {
  description = "Size in GiB of each instance's encrypted gp3 root volume. Building Quiver from source needs about 15 GiB; without instance store, a non-zero cache_disk also lives here."
  type        = number
  default     = 40

  validation {
    condition     = var.root_volume_size >= 20 && var.root_volume_size <= 1024 && floor(var.root_volume_size) == var.root_volume_size
    error_message = "root_volume_size must be an integer between 20 and 1024 (GiB)."
  }
}

variable "use_instance_store" {
  description = "Format and mount the servers' first NVMe instance-store disk at /var/lib/quiver (again after every stop/start, which wipes it) and put the disk tier there. Needs an instance type with instance store, such as c5d.xlarge."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------
# Quiver
# ---------------------------------------------------------------------------

variable "quiver_repo_url" {
  description = "HTTPS URL of the Quiver git repository the instances clone and build. Needed unless quiver_binary_url is set."
  type        = string
  default     = ""

  validation {
    condition     = var.quiver_repo_url == "" || can(regex("^https://[A-Za-z0-9._~:/?#@!&+,;=%-]+$", var.quiver_repo_url))
    error_message = "quiver_repo_url must be empty or an https:// URL without quotes, spaces or shell characters (egress allows only ports 80 and 443, so ssh:// and git:// cannot work)."
  }
}

variable "quiver_ref" {
  description = "Branch, tag or full commit id of quiver_repo_url to build."
  type        = string
  default     = "main"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$", var.quiver_ref))
    error_message = "quiver_ref must be a branch, tag or commit id (letters, digits, '.', '_', '/' and '-')."
  }
}

variable "quiver_binary_url" {
  description = "HTTP(S) URL of a .tar.gz holding prebuilt quiver-server and quiver-bench binaries at its top level (tar -czf quiver.tar.gz -C target/release quiver-server quiver-bench). When set, the instances download it instead of building from source; the binaries must be built for the AMI's architecture and a glibc no newer than the AMI's."
  type        = string
  default     = ""

  validation {
    condition     = var.quiver_binary_url == "" || can(regex("^https?://[A-Za-z0-9._~:/?#@!&+,;=%-]+$", var.quiver_binary_url))
    error_message = "quiver_binary_url must be empty or an http(s):// URL without quotes, spaces or shell characters."
  }
}

variable "quiver_binary_sha256" {
  description = "Expected SHA-256 (hex) of the quiver_binary_url archive; empty skips the check."
  type        = string
  default     = ""

  validation {
    condition     = var.quiver_binary_sha256 == "" || can(regex("^[0-9a-f]{64}$", var.quiver_binary_sha256))
    error_message = "quiver_binary_sha256 must be empty or 64 lower-case hex digits."
  }
}

variable "source_name" {
  description = "Name of the source the servers serve s3://<bucket>/data/ as (the benchmark passes it as --source)."
  type        = string
  default     = "lake"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,64}$", var.source_name))
    error_message = "source_name must be 1 to 64 letters, digits, '_' or '-'."
  }
}

variable "cache_memory" {
  description = "Memory tier of each server (cache.memory)."
  type        = string
  default     = "1GiB"

  validation {
    condition     = can(regex("^[0-9]+(KiB|MiB|GiB|KB|MB|GB)$", var.cache_memory))
    error_message = "cache_memory must be a size such as 512MiB or 1GiB."
  }
}

variable "cache_disk" {
  description = "Disk tier of each server (cache.disk). \"auto\" means 0 (memory only) without instance store, and 80% of the instance-store file system with use_instance_store = true; \"0\" always means memory only."
  type        = string
  default     = "auto"

  validation {
    condition     = can(regex("^(auto|0|[0-9]+(KiB|MiB|GiB|KB|MB|GB))$", var.cache_disk))
    error_message = "cache_disk must be auto, 0 or a size such as 20GiB."
  }
}

variable "topology_key" {
  description = "Object key of the cluster topology in the bucket. The servers may read and write it, the client may read it; it must lie outside data/."
  type        = string
  default     = "cluster/topology.json"

  validation {
    condition = (
      can(regex("^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)+$", var.topology_key))
      && !startswith(var.topology_key, "data/")
    )
    error_message = "topology_key must be a key with at least one folder (such as cluster/topology.json), made of letters, digits and !_.*'()- only, and must not lie under data/."
  }
}

variable "tls" {
  description = "Serve Flight over TLS with reader, admin and peer tokens (security.tf makes a CA, one certificate per server and the tokens). false: plain grpc:// without tokens, reachable only inside the rig's security group (insecure = true)."
  type        = bool
  default     = true
}

variable "tls_validity_hours" {
  description = "How long the rig's CA and node certificates are valid, in hours; re-apply to renew them."
  type        = number
  default     = 2160

  validation {
    condition     = var.tls_validity_hours >= 24 && floor(var.tls_validity_hours) == var.tls_validity_hours
    error_message = "tls_validity_hours must be a whole number of hours, at least 24."
  }
}

# ---------------------------------------------------------------------------
# Bucket
# ---------------------------------------------------------------------------

variable "bucket_name" {
  description = "Name of the data bucket; empty lets AWS generate a unique name starting with name_prefix."
  type        = string
  default     = ""

  validation {
    condition     = var.bucket_name == "" || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be empty or a valid S3 bucket name (3 to 63 lower-case letters, digits, '.' and '-')."
  }
}

variable "force_destroy_bucket" {
  description = "Let terraform destroy delete the bucket with every object version in it (the benchmark data is generated and can be made again). Set false to keep a bucket that holds anything else."
  type        = bool
  default     = true
}
