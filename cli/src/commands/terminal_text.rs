//! Fitting progress text to a terminal: its width, a step's prefix, cutting and wrapping lines (by characters,
//! never inside a UTF-8 sequence).

/// A running step's prefix, `#N name` cut so that the spinner, the timer and a third of the width (at least 12
/// columns) stay for its latest output line.
pub fn step_prefix(step: usize, name: &str, width: usize) -> String {
    let for_message = (width / 3).max(12);
    // The spinner and its space, the timer (4) and the spaces around it.
    let room = width.saturating_sub(for_message + 2 + 6).max(8);
    cut(&format!("#{step} {name}"), room)
}

/// `text` cut to `max` characters, the cut marked with `…`.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `text` wrapped at spaces into lines of at most `width` characters (a longer word is split).
pub fn wrap(text: &str, width: usize) -> String {
    let width = width.max(10);
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let mut current = String::new();
        for word in line.split(' ') {
            let mut word = word.to_string();
            loop {
                let len = current.chars().count();
                let needed = word.chars().count() + usize::from(len > 0);
                if len + needed <= width {
                    if len > 0 {
                        current.push(' ');
                    }
                    current.push_str(&word);
                    break;
                }
                if len > 0 {
                    out.push(std::mem::take(&mut current));
                    continue;
                }
                // A word longer than a line: split it.
                let head: String = word.chars().take(width).collect();
                word = word.chars().skip(width).collect();
                out.push(head);
                if word.is_empty() {
                    break;
                }
            }
        }
        out.push(current);
    }
    out.join("\n")
}

/// The columns a line may fill: the terminal's width less one, so that no line ends in the last column (where
/// terminals wrap when the next character comes).
pub fn usable_width() -> usize {
    terminal_width().saturating_sub(1).max(39)
}

/// The terminal's width in columns (standard error's; 80 when it is no terminal).
pub fn terminal_width() -> usize {
    let mut size = nix::libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ fills the winsize it is given; a failure leaves it zeroed.
    let ok = unsafe { nix::libc::ioctl(2, nix::libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col > 0 { usize::from(size.ws_col) } else { 80 }
}
