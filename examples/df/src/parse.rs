//! Parsing the text of `df -k` (pure functions, tested natively).
//!
//! Accepted header (whitespace-separated, case-sensitive):
//! `Filesystem 1K-blocks|1024-blocks Used Available|Avail Use%|Capacity Mounted on`
//! — GNU coreutils `df -k`, POSIX `df -kP` and FreeBSD `df -k`. macOS's
//! `df -k`, which adds inode columns, is refused (use `df -kP` there).
//!
//! A filesystem line is: the filesystem name (may contain spaces), three
//! integers (size, used, available), the use percentage (`NN%` or `-`), and
//! the mount point: everything after the percentage, spaces included. GNU
//! df's wrapped lines (a long filesystem name alone on a line, its numbers on
//! the next) are joined back.

/// One filesystem line of `df -k`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filesystem {
    /// The device or filesystem name (first column).
    pub filesystem: String,
    /// Used 1 KiB blocks.
    pub used: u64,
    /// Available 1 KiB blocks.
    pub available: u64,
    /// The mount point, as printed.
    pub mount: String,
}

impl Filesystem {
    /// `used / (used + available) * 100`, 0 when both are 0 (the percentage
    /// of the space an unprivileged user can fill that is in use).
    pub fn used_pct(&self) -> f64 {
        let total = self.used as f64 + self.available as f64;
        if total == 0.0 {
            0.0
        } else {
            self.used as f64 / total * 100.0
        }
    }
}

/// A line that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// 1-based line number in the text.
    pub line: usize,
    /// Why.
    pub reason: String,
}

/// What [`parse_df`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The filesystem lines, in order.
    pub filesystems: Vec<Filesystem>,
    /// Lines that were skipped, with the reason.
    pub skipped: Vec<Skipped>,
}

/// Parse the output of `df -k`. Fails only if the header is missing or not
/// a `df -k` header; bad filesystem lines are reported in
/// [`Report::skipped`].
pub fn parse_df(text: &str) -> Result<Report, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err("empty text, expected the output of `df -k`".to_string());
    };
    check_header(header)?;

    let mut report = Report::default();
    // A GNU-wrapped filesystem name waiting for its numbers line.
    let mut pending: Option<(usize, &str)> = None;
    for (n, line) in lines {
        let starts_blank = line.starts_with(char::is_whitespace);
        let (number, joined) = match pending.take() {
            Some((pn, name)) if starts_blank => (pn, format!("{name} {line}")),
            Some((pn, name)) => {
                report.skipped.push(Skipped {
                    line: pn,
                    reason: format!("`{name}` has no numbers"),
                });
                (n, line.to_string())
            }
            None => (n, line.to_string()),
        };
        let tokens = tokens(&joined);
        if tokens.len() == 1 && !starts_blank {
            pending = Some((number, line.trim()));
            continue;
        }
        match parse_line(&joined, &tokens) {
            Ok(fs) => report.filesystems.push(fs),
            Err(reason) => report.skipped.push(Skipped {
                line: number,
                reason,
            }),
        }
    }
    if let Some((line, name)) = pending {
        report.skipped.push(Skipped {
            line,
            reason: format!("`{name}` has no numbers"),
        });
    }
    Ok(report)
}

fn check_header(header: &str) -> Result<(), String> {
    let t: Vec<&str> = header.split_whitespace().collect();
    let ok = t.len() == 7
        && t[0] == "Filesystem"
        && (t[1] == "1K-blocks" || t[1] == "1024-blocks")
        && t[2] == "Used"
        && (t[3] == "Available" || t[3] == "Avail")
        && (t[4] == "Use%" || t[4] == "Capacity")
        && t[5] == "Mounted"
        && t[6] == "on";
    if ok {
        Ok(())
    } else {
        Err(format!(
            "not the output of `df -k`: unexpected header `{}`",
            header.trim()
        ))
    }
}

/// Whitespace-separated tokens with their byte ranges in `line`.
fn tokens(line: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, line.len()));
    }
    out
}

fn is_pct(tok: &str) -> bool {
    tok == "-"
        || tok
            .strip_suffix('%')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn parse_line(line: &str, tokens: &[(usize, usize)]) -> Result<Filesystem, String> {
    let tok = |i: usize| &line[tokens[i].0..tokens[i].1];
    // The first position after the name where size, used, available and a
    // percentage follow: the filesystem name may contain spaces.
    let start = (1..tokens.len().saturating_sub(3))
        .find(|&i| {
            tok(i).parse::<u64>().is_ok()
                && tok(i + 1).parse::<u64>().is_ok()
                && tok(i + 2).parse::<u64>().is_ok()
                && is_pct(tok(i + 3))
        })
        .ok_or_else(|| {
            format!(
                "expected `filesystem size used available use% mount`, got `{}`",
                line.trim()
            )
        })?;
    let used = tok(start + 1).parse::<u64>().map_err(|e| e.to_string())?;
    let available = tok(start + 2).parse::<u64>().map_err(|e| e.to_string())?;
    let mount = line[tokens[start + 3].1..].trim();
    if mount.is_empty() {
        return Err(format!("no mount point in `{}`", line.trim()));
    }
    Ok(Filesystem {
        filesystem: line[tokens[0].0..tokens[start - 1].1].to_string(),
        used,
        available,
        mount: mount.to_string(),
    })
}

/// The mount point as one uri level: leading `/` removed, every character
/// outside `[A-Za-z0-9_-]` replaced by `_`, and `/` alone becomes `root`.
pub fn mount_level(mount: &str) -> String {
    let stripped = mount.trim_start_matches('/');
    if stripped.is_empty() {
        return "root".to_string();
    }
    stripped
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GNU: &str = "\
Filesystem     1K-blocks     Used Available Use% Mounted on
udev             8123456        0   8123456   0% /dev
tmpfs            1628000     2100   1625900   1% /run
/dev/nvme0n1p2 490617784 98765432 366863264  22% /
/dev/nvme0n1p1    523248     6220    517028   2% /boot/efi
/dev/sdb1      976284628      100         0 100% /media/user/My Disk
";

    fn fs(filesystem: &str, used: u64, available: u64, mount: &str) -> Filesystem {
        Filesystem {
            filesystem: filesystem.into(),
            used,
            available,
            mount: mount.into(),
        }
    }

    #[test]
    fn gnu_df_k() {
        let r = parse_df(GNU).unwrap();
        assert_eq!(r.skipped, vec![]);
        assert_eq!(
            r.filesystems,
            vec![
                fs("udev", 0, 8123456, "/dev"),
                fs("tmpfs", 2100, 1625900, "/run"),
                fs("/dev/nvme0n1p2", 98765432, 366863264, "/"),
                fs("/dev/nvme0n1p1", 6220, 517028, "/boot/efi"),
                fs("/dev/sdb1", 100, 0, "/media/user/My Disk"),
            ]
        );
    }

    #[test]
    fn posix_and_bsd_headers() {
        let posix = "Filesystem 1024-blocks Used Available Capacity Mounted on\n\
                     /dev/sda1 100 25 75 25% /\n";
        assert_eq!(
            parse_df(posix).unwrap().filesystems,
            vec![fs("/dev/sda1", 25, 75, "/")]
        );
        let bsd = "Filesystem 1K-blocks Used Avail Capacity  Mounted on\n\
                   /dev/ada0p2 1000 10 990 1% /\n";
        assert_eq!(
            parse_df(bsd).unwrap().filesystems,
            vec![fs("/dev/ada0p2", 10, 990, "/")]
        );
    }

    #[test]
    fn bad_headers_are_errors() {
        assert_eq!(
            parse_df("").unwrap_err(),
            "empty text, expected the output of `df -k`"
        );
        assert_eq!(
            parse_df("Filesystem Size Used Avail Use% Mounted on\n/dev/x 1G 1G 0 100% /\n")
                .unwrap_err(),
            "not the output of `df -k`: unexpected header `Filesystem Size Used Avail Use% Mounted on`"
        );
        assert!(parse_df("hello world").is_err());
    }

    #[test]
    fn spaces_in_names_and_mount_points() {
        let text = "Filesystem 1K-blocks Used Available Use% Mounted on\n\
                    map auto_home 0 0 0 - /System/Volumes/Data/home\n\
                    //server/share name 2000 500 1500 25%   /mnt/a  b  \n";
        let r = parse_df(text).unwrap();
        assert_eq!(
            r.filesystems,
            vec![
                fs("map auto_home", 0, 0, "/System/Volumes/Data/home"),
                fs("//server/share name", 500, 1500, "/mnt/a  b"),
            ]
        );
    }

    #[test]
    fn wrapped_gnu_lines_are_joined() {
        let text = "Filesystem 1K-blocks Used Available Use% Mounted on\n\
                    /dev/mapper/a-very-long-volume-group-name\n\
                    \x20                 1000  250   750  25% /srv\n\
                    /dev/lonely\n\
                    /dev/sda1 100 25 75 25% /\n";
        let r = parse_df(text).unwrap();
        assert_eq!(
            r.filesystems,
            vec![
                fs(
                    "/dev/mapper/a-very-long-volume-group-name",
                    250,
                    750,
                    "/srv"
                ),
                fs("/dev/sda1", 25, 75, "/"),
            ]
        );
        assert_eq!(
            r.skipped,
            vec![Skipped {
                line: 4,
                reason: "`/dev/lonely` has no numbers".into()
            }]
        );
    }

    #[test]
    fn unparsable_lines_are_skipped_with_their_number() {
        let text = "Filesystem 1K-blocks Used Available Use% Mounted on\n\
                    /dev/a 100 x 75 25% /a\n\
                    /dev/b 100 25 75 25%\n\
                    /dev/c 100 -5 75 25% /c\n\
                    \n\
                    /dev/d 10 5 5 50% /d\n\
                    /dev/e\n";
        let r = parse_df(text).unwrap();
        assert_eq!(r.filesystems, vec![fs("/dev/d", 5, 5, "/d")]);
        let lines: Vec<usize> = r.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 7]);
        assert!(r.skipped[1].reason.contains("/dev/b"), "{:?}", r.skipped[1]);
    }

    #[test]
    fn used_pct() {
        assert_eq!(fs("a", 25, 75, "/").used_pct(), 25.0);
        assert_eq!(fs("a", 0, 0, "/").used_pct(), 0.0);
        assert_eq!(fs("a", 100, 0, "/").used_pct(), 100.0);
        assert_eq!(fs("a", 1, 2, "/").used_pct(), 1.0 / 3.0 * 100.0);
    }

    #[test]
    fn mount_levels() {
        assert_eq!(mount_level("/"), "root");
        assert_eq!(mount_level("//"), "root");
        assert_eq!(mount_level("/boot/efi"), "boot_efi");
        assert_eq!(mount_level("/media/user/My Disk"), "media_user_My_Disk");
        assert_eq!(mount_level("/run/user-1000"), "run_user-1000");
        assert_eq!(mount_level("/mnt/ñ.x"), "mnt___x");
        assert_eq!(mount_level("none"), "none");
    }
}
