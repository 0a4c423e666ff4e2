//! Entry paths: checking the ones a document names, and splitting them.

use magicfs_types::NAME_MAX;

/// Checks a non-root path from a document: relative, names separated by
/// single slashes, no `.` or `..` names, no NUL, names of at most 255 bytes.
pub(crate) fn check(path: &str) -> Result<(), String> {
    if path.starts_with('/') {
        return Err(format!("path {path:?} is absolute; paths are relative to the tree's root"));
    }
    for name in path.split('/') {
        match name {
            "" => return Err(format!("path {path:?} has an empty component (doubled or trailing slash)")),
            "." | ".." => return Err(format!("path {path:?} has a {name:?} component")),
            _ if name.contains('\0') => return Err(format!("path {path:?} contains a NUL character")),
            _ if name.len() > NAME_MAX => return Err(format!("path {path:?} has a name longer than 255 bytes")),
            _ => {}
        }
    }
    Ok(())
}

/// The directory holding `path` (`""` for the root's entries) and the name
/// within it.
pub(crate) fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

/// `name` inside directory `dir` (`""` is the root).
pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_and_splits() {
        assert!(check("a/b c/d").is_ok());
        for bad in ["/a", "a//b", "a/", "./a", "a/../b", "..", "a/\0"] {
            assert!(check(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check(&"n".repeat(256)).is_err());
        assert_eq!(split("a/b/c"), ("a/b", "c"));
        assert_eq!(split("c"), ("", "c"));
        assert_eq!(join("", "c"), "c");
        assert_eq!(join("a/b", "c"), "a/b/c");
    }
}
