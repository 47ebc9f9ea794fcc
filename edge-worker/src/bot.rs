//! Bot detection from the User-Agent: crawlers, monitors, headless browsers and HTTP libraries.
//! The result is a flag (`context.edge.bot`), never a reason to drop a message.

/// Lower-case substrings that mark an automated client, checked in order.
const PATTERNS: &[&str] = &[
    "bot",
    "crawl",
    "spider",
    "slurp",
    "headless",
    "phantomjs",
    "puppeteer",
    "playwright",
    "selenium",
    "webdriver",
    "lighthouse",
    "pagespeed",
    "facebookexternalhit",
    "embedly",
    "preview",
    "monitor",
    "pingdom",
    "uptime",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "httpx",
    "go-http-client",
    "okhttp",
    "java/",
    "apache-httpclient",
    "libwww-perl",
    "node-fetch",
    "axios/",
    "undici",
    "scrapy",
];

/// Why a User-Agent looks automated, or `None` for a browser-looking one.
pub fn detect(user_agent: Option<&str>) -> Option<&'static str> {
    let ua = user_agent.map(str::trim).unwrap_or("");
    if ua.is_empty() {
        return Some("empty user agent");
    }
    let lower = ua.to_ascii_lowercase();
    PATTERNS.iter().copied().find(|p| lower.contains(p))
}

#[cfg(test)]
mod tests {
    use super::detect;

    const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    const SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";

    #[test]
    fn real_browsers_are_not_bots() {
        assert_eq!(detect(Some(CHROME)), None);
        assert_eq!(detect(Some(SAFARI)), None);
    }

    #[test]
    fn crawlers_headless_browsers_and_http_libraries_are_bots() {
        for ua in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
            "curl/8.5.0",
            "python-requests/2.32.3",
            "Go-http-client/2.0",
            "facebookexternalhit/1.1",
            "Mozilla/5.0 (compatible; bingbot/2.0)",
        ] {
            assert!(detect(Some(ua)).is_some(), "{ua}");
        }
    }

    #[test]
    fn a_missing_user_agent_is_suspicious() {
        assert_eq!(detect(None), Some("empty user agent"));
        assert_eq!(detect(Some("  ")), Some("empty user agent"));
    }
}
