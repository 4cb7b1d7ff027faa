//! Building a bundled Python component twice, at two places, from a source
//! distribution with a C extension and a console script: the same bytes.

use std::path::{Path, PathBuf};

use berth_host::interpreter::base_prefix;
use berth_host::python::find_interpreter;

/// The setuptools and wheel wheels CPython (3.12 on) keeps for its own tests: what a
/// source distribution needs to be built with no index.
fn build_wheels(python: &Path) -> Option<Vec<PathBuf>> {
    let prefix = base_prefix(python).ok()?;
    let lib = std::fs::read_dir(prefix.join("lib"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("python3"))
        })?;
    let mut found = Vec::new();
    for dir in [lib.join("test/wheeldata"), lib.join("test")] {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let wheel = Path::new(&name)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("whl"));
            if wheel && (name.starts_with("setuptools-") || name.starts_with("wheel-")) {
                found.push(entry.path());
            }
        }
    }
    let has = |p: &str| found.iter().any(|f| f.to_string_lossy().contains(p));
    (has("/setuptools-") && has("/wheel-")).then_some(found)
}

/// `tiny-1.0.tar.gz` in `links`: a C extension and a console script.
fn tiny_sdist(links: &Path) {
    let src = links.join("tiny-1.0");
    std::fs::create_dir_all(src.join("src")).unwrap();
    std::fs::write(
        src.join("setup.py"),
        "from setuptools import setup, Extension\n\
         setup(name='tiny', version='1.0', ext_modules=[Extension('tiny', ['src/tiny.c'])],\n\
               entry_points={'console_scripts': ['tiny-hello=tiny:hello']})\n",
    )
    .unwrap();
    std::fs::write(
        src.join("src/tiny.c"),
        "#include <Python.h>\n\
         static PyObject *hello(PyObject *self, PyObject *args) { return PyLong_FromLong(42); }\n\
         static PyMethodDef M[] = {{\"hello\", hello, METH_NOARGS, \"\"}, {0}};\n\
         static struct PyModuleDef D = {PyModuleDef_HEAD_INIT, \"tiny\", 0, -1, M};\n\
         PyMODINIT_FUNC PyInit_tiny(void) { return PyModule_Create(&D); }\n",
    )
    .unwrap();
    let status = std::process::Command::new("tar")
        .arg("-czf")
        .arg(links.join("tiny-1.0.tar.gz"))
        .arg("-C")
        .arg(links)
        .arg("tiny-1.0")
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::remove_dir_all(&src).unwrap();
}

/// Every file under `dir` by its path there, with its bytes (a symlink's target).
fn contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(dir).unwrap().to_path_buf();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.push((rel, target.into_os_string().into_encoded_bytes()));
            } else {
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
#[allow(clippy::print_stderr)] // a skipped test says why
fn two_builds_of_a_c_extension_and_a_console_script_are_the_same_bytes() {
    let Ok(python) = find_interpreter(">=3.12") else {
        eprintln!("skipped: no Python 3.12 or later");
        return;
    };
    let Some(wheels) = build_wheels(&python) else {
        eprintln!(
            "skipped: {} keeps no setuptools and wheel wheels",
            python.display()
        );
        return;
    };
    if which("cc").is_none() {
        eprintln!("skipped: no C compiler");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let links = tmp.path().join("links");
    std::fs::create_dir(&links).unwrap();
    for wheel in &wheels {
        std::fs::copy(wheel, links.join(wheel.file_name().unwrap())).unwrap();
    }
    tiny_sdist(&links);
    let requirements = [
        "--no-index".to_owned(),
        format!("--find-links {}", links.display()),
        "tiny==1.0".to_owned(),
    ];
    let first = tmp.path().join("one/app");
    let second = tmp.path().join("elsewhere/two/app");
    for dest in [&first, &second] {
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        berth_host::portable::build(&python, &requirements, dest, 1_700_000_000).unwrap();
    }
    let (a, b) = (contents(&first), contents(&second));
    let names = |c: &[(PathBuf, Vec<u8>)]| c.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b));
    let differ: Vec<&PathBuf> = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x.1 != y.1)
        .map(|(x, _)| &x.0)
        .collect();
    assert!(differ.is_empty(), "differ: {differ:?}");
    // The extension was built here and runs from the script; the script's RECORD line
    // is its own.
    assert!(
        a.iter()
            .any(|(p, _)| p.to_string_lossy().contains("tiny.cpython-")),
        "{:?}",
        names(&a)
    );
    let out = std::process::Command::new(second.join("bin/tiny-hello"))
        .output()
        .unwrap();
    // The script exits with what `hello` returns.
    assert_eq!(out.status.code(), Some(42), "{out:?}");
    let record = a
        .iter()
        .find(|(p, _)| p.ends_with("tiny-1.0.dist-info/RECORD"))
        .map(|(_, c)| String::from_utf8(c.clone()).unwrap())
        .unwrap();
    let script = std::fs::read(first.join("bin/tiny-hello")).unwrap();
    let line = record
        .lines()
        .find(|l| l.starts_with("../../../bin/tiny-hello,"))
        .unwrap();
    assert!(line.ends_with(&format!(",{}", script.len())), "{line}");
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}
