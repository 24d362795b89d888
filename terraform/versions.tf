terraform {
  # The plan tests in tests/ use mock providers, which need 1.7 or newer;
  # only infra/check-terraform.sh runs them, so plan and apply need just 1.5.
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
    # The rig's CA, node certificates (tls) and tokens (random), made at
    # apply time: security.tf.
    tls = {
      source  = "hashicorp/tls"
      version = "~> 4.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(
      {
        Project   = "quiver"
        Rig       = var.name_prefix
        ManagedBy = "terraform"
      },
      var.tags,
    )
  }
}
