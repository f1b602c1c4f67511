//! The client tools: each is a client of the service's HTTP API through [`client::ApiClient`]
//! (or, for the mock provider, plays the provider's side of the protocol). Arrows: tools →
//! `protocol` and `core` only, never `crate::service`.

pub mod bench;
pub mod client;
pub mod import;
pub mod mock_provider;
pub mod retry_plan;
pub mod tui;

#[cfg(test)]
mod tests {
    /// The tools are clients of the API: no file under `src/tools` names the service's modules.
    #[test]
    fn tools_never_reach_into_the_service() {
        fn visit(dir: &std::path::Path, offenders: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).expect("src/tools is readable") {
                let path = entry.expect("a directory entry").path();
                if path.is_dir() {
                    visit(&path, offenders);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).expect("a source file");
                    // Built here so that this test's own text does not match.
                    let needle = ["crate", "::", "service"].concat();
                    for (n, line) in text.lines().enumerate() {
                        let code = line.split("//").next().unwrap_or_default();
                        if code.contains(&needle) {
                            offenders.push(format!("{}:{}", path.display(), n + 1));
                        }
                    }
                }
            }
        }
        let mut offenders = Vec::new();
        visit(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/tools"), &mut offenders);
        assert!(offenders.is_empty(), "tools use the service directly at {offenders:?}");
    }
}
