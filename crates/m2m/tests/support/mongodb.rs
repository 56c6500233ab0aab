//! What the MongoDB cases of more than one test file share (each includes
//! this file with `#[path]`; Cargo does not build `tests/support/` as a
//! test of its own).

/// Drops a test database when the test ends, passed or not.
pub(crate) struct DropDatabase {
    pub(crate) url: String,
    pub(crate) database: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let (url, database) = (self.url.clone(), self.database.clone());
        // A runtime of its own, on a thread of its own: this may run while
        // another runtime is being torn down.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let client = mongodb::Client::with_uri_str(&url).await?;
                    client.database(&database).drop().await
                })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.database);
        }
    }
}
