# The data bucket: data/ holds the Parquet files the servers serve (the
# benchmark uploads its generated data to data/quiver-bench/), and topology_key
# holds the cluster topology. Private, encrypted, versioned, TLS only.

resource "aws_s3_bucket" "data" {
  #checkov:skip=CKV_AWS_18:Server access logging needs a second bucket that would itself need logging; this short-lived benchmark bucket holds only generated data, and CloudTrail covers API auditing where an account needs it.
  #checkov:skip=CKV_AWS_144:Cross-region replication would double storage and transfer cost for generated benchmark data that can be made again at any time.
  #checkov:skip=CKV_AWS_145:Encrypted with SSE-S3 (AES-256). SSE-KMS would add a KMS request, KMS permissions and per-request cost to every uncached read, which is exactly what the benchmark measures.
  #checkov:skip=CKV2_AWS_62:Nothing consumes object events; the nodes validate objects by ETag and size themselves.
  bucket        = var.bucket_name != "" ? var.bucket_name : null
  bucket_prefix = var.bucket_name == "" ? "${local.name}-" : null
  force_destroy = var.force_destroy_bucket

  tags = {
    Name = "${local.name}-data"
  }
}

resource "aws_s3_bucket_public_access_block" "data" {
  bucket                  = aws_s3_bucket.data.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# ACLs off: the bucket owner owns every object and only IAM policies grant.
resource "aws_s3_bucket_ownership_controls" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "data" {
  bucket = aws_s3_bucket.data.id

  versioning_configuration {
    status = "Enabled"
  }
}

# Versioning keeps every overwritten benchmark file; expire old versions and
# abandoned multipart uploads so a long-lived rig does not accumulate them.
resource "aws_s3_bucket_lifecycle_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    id     = "expire-old-versions-and-uploads"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = 7
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.data]
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.data.arn,
      "${aws_s3_bucket.data.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "data" {
  bucket = aws_s3_bucket.data.id
  policy = data.aws_iam_policy_document.bucket.json

  # A bucket policy put before the public access block may be judged public.
  depends_on = [aws_s3_bucket_public_access_block.data]
}
