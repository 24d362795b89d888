# One role per kind of instance, each with only the S3 access it needs.
# Credentials reach Quiver through the instance profile (object_store reads
# them from the instance metadata service, IMDSv2); no key is written
# anywhere.

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    sid     = "Ec2AssumeRole"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

# ---------------------------------------------------------------------------
# Servers: read data/, read and write the topology object.
# ---------------------------------------------------------------------------

data "aws_iam_policy_document" "server" {
  statement {
    sid       = "ReadData"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.data.arn}/${local.data_prefix}*"]
  }

  # Listing without a prefix condition: S3 answers a GET of a missing key
  # with 404 only to callers that may list the bucket, and Quiver must tell
  # "not written yet" (the topology before `quiver cluster init`, an object
  # deleted from the lake) from "access denied". The bucket holds only this
  # rig's data and topology, so key names are all a listing can reveal.
  statement {
    sid       = "ListBucket"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.data.arn]
  }

  statement {
    sid       = "ReadWriteTopology"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${aws_s3_bucket.data.arn}/${var.topology_key}"]
  }
}

resource "aws_iam_role" "server" {
  name_prefix        = "${local.name}-server-"
  description        = "Quiver benchmark servers: read data/, read and write the topology object"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

resource "aws_iam_role_policy" "server" {
  name   = "quiver-server-s3"
  role   = aws_iam_role.server.id
  policy = data.aws_iam_policy_document.server.json
}

resource "aws_iam_instance_profile" "server" {
  name_prefix = "${local.name}-server-"
  role        = aws_iam_role.server.name
}

# ---------------------------------------------------------------------------
# Client: read and write data/ (the benchmark uploads its generated data),
# read the topology object.
# ---------------------------------------------------------------------------

data "aws_iam_policy_document" "client" {
  statement {
    sid    = "ReadWriteData"
    effect = "Allow"
    # AbortMultipartUpload lets a failed large upload clean up after itself.
    actions   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.data.arn}/${local.data_prefix}*"]
  }

  statement {
    sid       = "ListData"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.data.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [local.data_prefix, "${local.data_prefix}*"]
    }
  }

  statement {
    sid       = "ReadTopology"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.data.arn}/${var.topology_key}"]
  }
}

resource "aws_iam_role" "client" {
  name_prefix        = "${local.name}-client-"
  description        = "Quiver benchmark client: read and write data/, read the topology object"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

resource "aws_iam_role_policy" "client" {
  name   = "quiver-client-s3"
  role   = aws_iam_role.client.id
  policy = data.aws_iam_policy_document.client.json
}

resource "aws_iam_instance_profile" "client" {
  name_prefix = "${local.name}-client-"
  role        = aws_iam_role.client.name
}
