//! `USER_SERVICE__AUTH__HASHING_THREADS` bounds the threads that hash passwords. Its own test
//! binary: the threads belong to the process and start with its first hash.

use user_service::domain::{Password, set_hashing_threads, verify_password_in_background};

fn argon2_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("argon2-"))
        .count()
}

#[tokio::test]
async fn one_hashing_thread_serves_every_hash_when_set_to_one() {
    set_hashing_threads(1);
    let hashes = futures_util::future::join_all((0..3).map(|i| {
        Password::parse(format!("correct horse {i}"))
            .expect("a valid password")
            .hash_in_background()
    }))
    .await;
    let hashes: Vec<String> = hashes
        .into_iter()
        .map(|hash| hash.expect("hashed"))
        .collect();
    assert!(verify_password_in_background("correct horse 1".into(), hashes[1].clone()).await);
    assert!(!verify_password_in_background("correct horse 2".into(), hashes[1].clone()).await);
    assert_eq!(argon2_threads(), 1);
}
