# What infra/ec2-bench.sh (and an operator) needs after apply. Read them all
# with `terraform -chdir=terraform output -json`.

output "region" {
  description = "AWS region of the rig."
  value       = var.region
}

output "bucket_name" {
  description = "Name of the data bucket."
  value       = aws_s3_bucket.data.bucket
}

output "data_url" {
  description = "S3 URL the servers serve as source var.source_name (quiver-bench --s3)."
  value       = "s3://${aws_s3_bucket.data.bucket}/${local.data_prefix}"
}

output "topology_url" {
  description = "S3 URL of the cluster topology object (read and written by the servers)."
  value       = "s3://${aws_s3_bucket.data.bucket}/${var.topology_key}"
}

output "source_name" {
  description = "Source name the servers serve the data under (quiver-bench --source)."
  value       = var.source_name
}

output "ssh_user" {
  description = "Login user of the AMI (admin on Debian, ubuntu on Ubuntu)."
  value       = local.ssh_user
}

output "admin_port" {
  description = "Admin port of the servers (/metrics, /health, /ready), reachable from the client."
  value       = var.admin_port
}

output "server_instance_ids" {
  description = "Instance ids of the servers; each node's cluster.node_id is its instance id."
  value       = aws_instance.server[*].id
}

output "server_private_ips" {
  description = "Private addresses of the servers."
  value       = aws_instance.server[*].private_ip
}

output "server_public_ips" {
  description = "Public addresses of the servers (SSH only, from operator_cidr)."
  value       = aws_instance.server[*].public_ip
}

output "flight_urls" {
  description = "Flight URLs of the servers (grpc+tls:// with var.tls), reachable from inside the rig's security group (the client)."
  value       = [for ip in aws_instance.server[*].private_ip : "${local.scheme}://${ip}:${var.flight_port}"]
}

output "tls" {
  description = "Whether the servers serve TLS with tokens; the client then has the CA in /etc/quiver/ca.pem and the admin token in /etc/quiver/admin-token."
  value       = var.tls
}

output "ca_cert_pem" {
  description = "The rig's CA certificate (empty without var.tls), for clients outside the client instance."
  value       = local.ca_cert_pem
}

output "admin_token" {
  description = "The admin token of the servers (empty without var.tls); `terraform output -raw admin_token`."
  value       = local.tokens.admin
  sensitive   = true
}

output "client_public_ip" {
  description = "Public address of the benchmark client."
  value       = aws_instance.client.public_ip
}

output "client_private_ip" {
  description = "Private address of the benchmark client."
  value       = aws_instance.client.private_ip
}

output "ssh_client" {
  description = "SSH command for the benchmark client."
  value       = "ssh ${local.ssh_user}@${aws_instance.client.public_ip}"
}

output "ssh_servers" {
  description = "SSH commands for the servers."
  value       = [for ip in aws_instance.server[*].public_ip : "ssh ${local.ssh_user}@${ip}"]
}

output "bootstrap_log_hint" {
  description = "Where to look when an instance does not come up."
  value       = "First boot builds Quiver (about 15-25 min from source): follow it with `sudo tail -f /var/log/cloud-init-output.log`; a server runs `systemctl status quiver` / `journalctl -u quiver`; success is /etc/quiver/bootstrap.done, failure /etc/quiver/bootstrap.failed."
}
