use super::*;

#[test]
fn templates_match_one_path_segment_per_variable() {
    assert!(template_matches(
        "test://template/{id}/data",
        "test://template/42/data"
    ));
    assert!(!template_matches(
        "test://template/{id}/data",
        "test://template/4/2/data"
    ));
    assert!(!template_matches(
        "test://template/{id}/data",
        "test://template//data"
    ));
    assert!(template_matches("file:///{path}", "file:///readme"));
    assert!(!template_matches(
        "test://static-text",
        "test://static-binary"
    ));
    assert!(template_matches("test://static-text", "test://static-text"));
}
