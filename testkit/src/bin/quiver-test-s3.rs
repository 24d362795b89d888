//! The testkit's S3 server as a process, for tests in other languages:
//! `quiver-test-s3 ROOT BUCKET...` serves ROOT (each bucket a directory) on
//! a free loopback port with SigV4 checked against the testkit's key, prints
//! `http://127.0.0.1:PORT` on one line, and runs until it is killed.

use std::io::Write;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(root) = args.next() else {
        eprintln!("usage: quiver-test-s3 ROOT BUCKET...");
        std::process::exit(2);
    };
    let buckets: Vec<String> = args.collect();
    let refs: Vec<&str> = buckets.iter().map(String::as_str).collect();
    let server = quiver_testkit::S3Server::start(std::path::Path::new(&root), &refs).await?;
    let mut out = std::io::stdout();
    writeln!(out, "{}", server.endpoint())?;
    out.flush()?;
    std::future::pending::<()>().await;
    Ok(())
}
