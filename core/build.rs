// `sqlx::migrate!` embeds the migrations when the crate compiles; without this, a new or edited
// migration file would not rebuild the crate and a binary would run without it.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
