//! `komlog-c`: the command line for building komlogd impulses written in C.
//!
//! ```text
//! komlog-c build [-I DIR]... [--wit PATH] [--world NAME] [--cflag FLAG]... -o OUT.wasm SOURCE.c...
//! komlog-c bindings [--wit PATH] [--world NAME] OUT_DIR
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use komlog_c::{BuildOptions, build, generate_bindings};

const USAGE: &str = "\
usage:
  komlog-c build [-I DIR]... [--wit PATH] [--world NAME] [--cflag FLAG]... -o OUT.wasm SOURCE.c...
      generate the bindings, compile with clang for wasm32-wasi and write the component
  komlog-c bindings [--wit PATH] [--world NAME] OUT_DIR
      write impulse.h, impulse.c, impulse_component_type.o and komlog_impulse.h
Without --wit the komlog:impulse@0.1.0 contract built into this tool is used.
--world is `impulse` (the default) or `stateful-impulse` (adds
exports_impulse_snapshot and exports_impulse_restore).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("komlog-c: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<()> {
    let Some((command, rest)) = args.split_first() else {
        bail!("no command given\n{USAGE}");
    };
    match command.as_str() {
        "build" => {
            let options = parse_build(rest)?;
            let out = build(&options)?;
            println!("{}", out.display());
            Ok(())
        }
        "bindings" => {
            let (wit, world, positional) = parse_common(rest)?;
            let [dir] = positional.as_slice() else {
                bail!("`bindings` takes exactly one output directory\n{USAGE}");
            };
            let world = world.as_deref().unwrap_or(komlog_c::WORLD);
            for file in generate_bindings(wit.as_deref(), world, &PathBuf::from(dir))? {
                println!("{}", file.display());
            }
            Ok(())
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command `{other}`\n{USAGE}"),
    }
}

type Common = (Option<PathBuf>, Option<String>, Vec<String>);

fn parse_common(args: &[String]) -> Result<Common> {
    let mut wit = None;
    let mut world = None;
    let mut positional = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--wit" => wit = Some(PathBuf::from(value(&mut it, "--wit")?)),
            "--world" => world = Some(value(&mut it, "--world")?.to_owned()),
            flag if flag.starts_with('-') => bail!("unknown option `{flag}`\n{USAGE}"),
            _ => positional.push(arg.clone()),
        }
    }
    Ok((wit, world, positional))
}

fn parse_build(args: &[String]) -> Result<BuildOptions> {
    let mut options = BuildOptions::default();
    let mut output = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-o" => output = Some(PathBuf::from(value(&mut it, "-o")?)),
            "-I" => options
                .include_dirs
                .push(PathBuf::from(value(&mut it, "-I")?)),
            "--wit" => options.wit = Some(PathBuf::from(value(&mut it, "--wit")?)),
            "--world" => options.world = Some(value(&mut it, "--world")?.to_owned()),
            "--cflag" => options.cflags.push(value(&mut it, "--cflag")?.to_owned()),
            flag if flag.starts_with("-I") => options.include_dirs.push(PathBuf::from(&flag[2..])),
            flag if flag.starts_with('-') => bail!("unknown option `{flag}`\n{USAGE}"),
            _ => options.sources.push(PathBuf::from(arg)),
        }
    }
    options.output = output.ok_or_else(|| anyhow!("`build` needs -o OUT.wasm\n{USAGE}"))?;
    Ok(options)
}

fn value<'a>(it: &mut std::slice::Iter<'a, String>, flag: &str) -> Result<&'a str> {
    it.next()
        .map(String::as_str)
        .ok_or_else(|| anyhow!("{flag} needs a value\n{USAGE}"))
}
