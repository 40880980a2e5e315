//! Account pages: `GET/POST /login`, `GET/POST /signup` and `POST /logout`,
//! plain HTML forms carrying the session's CSRF token, with errors shown next
//! to their field. Logging in or signing up always issues a new session.

use actix_web::{http::StatusCode, web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use crate::{
    auth::{AuthConfig, Visitor},
    domain::{Role, Username},
    error::{ApiError, Code},
    rooms::Hub,
    store::{accounts::User, Store},
    web::{
        api::{end_session, hash_new_password, renew_session, Logins},
        client_key,
        i18n::PageLang,
        pages::{
            error_page, forbidden_page, local_path, render_in, see_other, with_cookie,
            with_session, Chrome, Page,
        },
    },
};

/// Shortest password accepted at sign-up.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted at sign-up.
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// Registers the account routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/login", web::get().to(login_form))
        .route("/login", web::post().to(login_submit))
        .route("/signup", web::get().to(signup_form))
        .route("/signup", web::post().to(signup_submit))
        .route("/logout", web::post().to(logout));
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

#[derive(Deserialize)]
struct AccountForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    next: String,
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf_token: String,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    c: Chrome,
    next: String,
    username: String,
    form_error: Option<&'static str>,
    username_error: Option<&'static str>,
    password_error: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage {
    c: Chrome,
    username: String,
    form_error: Option<&'static str>,
    username_error: Option<&'static str>,
    password_error: Option<&'static str>,
}

impl LoginPage {
    /// The login form, without errors, for `username` and back to `next`.
    fn new(c: Chrome, next: String, username: String) -> Self {
        LoginPage {
            c,
            next,
            username,
            form_error: None,
            username_error: None,
            password_error: None,
        }
    }
}

impl SignupPage {
    /// The sign-up form, without errors, for `username`.
    fn new(c: Chrome, username: String) -> Self {
        SignupPage {
            c,
            username,
            form_error: None,
            username_error: None,
            password_error: None,
        }
    }
}

/// A posted login or sign-up form and what both handlers need: the visitor,
/// the page language, the form and the password check (a tuple: actix
/// extracts it in this order).
type AccountPost = (Visitor, PageLang, web::Form<AccountForm>, Logins);

/// A login or sign-up page, as far as the answers both forms share touch it.
trait AccountPage: Template {
    /// The page's chrome and its form-wide error.
    fn chrome_and_error(&mut self) -> (&mut Chrome, &mut Option<&'static str>);
}

impl AccountPage for LoginPage {
    fn chrome_and_error(&mut self) -> (&mut Chrome, &mut Option<&'static str>) {
        (&mut self.c, &mut self.form_error)
    }
}

impl AccountPage for SignupPage {
    fn chrome_and_error(&mut self) -> (&mut Chrome, &mut Option<&'static str>) {
        (&mut self.c, &mut self.form_error)
    }
}

/// A form posted with an expired CSRF token: 403 and the form again, on a
/// session (started now if there was none) so that the next try can pass.
async fn form_expired(
    visitor: Visitor,
    lang: &PageLang,
    store: &Store,
    auth: &AuthConfig,
    mut page: impl AccountPage,
) -> Result<HttpResponse, ApiError> {
    let (visitor, cookie) = with_session(visitor, store, auth).await?;
    let (c, form_error) = page.chrome_and_error();
    *c = Chrome::new(&visitor, lang, "/");
    *form_error = Some(lang.lang.strings().err_form_expired);
    with_cookie(render_in(lang, StatusCode::FORBIDDEN, page)?, cookie)
}

/// Ends the visitor's current session (anonymous or not) and starts one for
/// `user`; answers with a redirect to `next` carrying the new cookie.
async fn sign_in(
    visitor: &Visitor,
    store: &Store,
    auth: &AuthConfig,
    user: User,
    next: &str,
) -> Result<HttpResponse, ApiError> {
    let (_, cookie) = renew_session(visitor, store, auth, user).await?;
    with_cookie(see_other(next), Some(cookie))
}

// The query first: a refused query is answered before `Page` starts a session.
async fn login_form(query: web::Query<NextQuery>, page: Page) -> Result<HttpResponse, ApiError> {
    let next = query
        .next
        .as_deref()
        .and_then(local_path)
        .unwrap_or("/")
        .to_string();
    if page.visitor.user().is_some() {
        return Ok(see_other(&next));
    }
    let form = LoginPage::new(page.chrome("/"), next, String::new());
    page.render(StatusCode::OK, form)
}

async fn login_submit(
    (visitor, lang, form, logins): AccountPost,
) -> Result<HttpResponse, ApiError> {
    let (store, auth) = (&logins.store, &logins.auth);
    let form = form.into_inner();
    let s = lang.lang.strings();
    let next = local_path(&form.next).unwrap_or("/").to_string();
    let username = form.username.trim().to_string();
    let c = Chrome::new(&visitor, &lang, "/");
    let mut page = LoginPage::new(c, next.clone(), username.clone());
    if visitor.check_csrf(Some(&form.csrf_token)).is_err() {
        return form_expired(visitor, &lang, store, auth, page).await;
    }
    if username.is_empty() || form.password.is_empty() {
        page.username_error = username.is_empty().then_some(s.err_required);
        page.password_error = form.password.is_empty().then_some(s.err_required);
        return render_in(&lang, StatusCode::UNPROCESSABLE_ENTITY, page);
    }
    match logins.check(&visitor, &username, &form.password).await {
        Ok(user) => sign_in(&visitor, store, auth, user, &next).await,
        Err(e) if e.code() == Code::RateLimited => {
            page.form_error = Some(s.err_rate_limited);
            render_in(&lang, StatusCode::TOO_MANY_REQUESTS, page)
        }
        Err(ApiError::Client {
            code: Code::Unavailable,
            ..
        }) => {
            page.form_error = Some(s.err_rate_limited);
            render_in(&lang, StatusCode::SERVICE_UNAVAILABLE, page)
        }
        Err(e) if e.code() == Code::NotAuthenticated => {
            page.password_error = Some(s.err_wrong_credentials);
            render_in(&lang, StatusCode::UNAUTHORIZED, page)
        }
        Err(e) => Err(e),
    }
}

async fn signup_form(page: Page) -> Result<HttpResponse, ApiError> {
    if !page.visitor.tenant.signup {
        return page.respond(signup_closed_page(page.chrome("/"), &page.lang)?);
    }
    if page.visitor.user().is_some() {
        return Ok(see_other("/"));
    }
    page.render(
        StatusCode::OK,
        SignupPage::new(page.chrome("/"), String::new()),
    )
}

/// The page of a tenant without sign-up.
fn signup_closed_page(c: Chrome, lang: &PageLang) -> Result<HttpResponse, ApiError> {
    let s = c.s;
    error_page(c, lang, StatusCode::NOT_FOUND, s.sign_up, s.signup_closed)
}

/// [`signup_closed_page`] for a posted form (with a session, like every page).
async fn signup_closed(
    visitor: Visitor,
    lang: &PageLang,
    store: &Store,
    auth: &AuthConfig,
) -> Result<HttpResponse, ApiError> {
    let (visitor, cookie) = with_session(visitor, store, auth).await?;
    with_cookie(
        signup_closed_page(Chrome::new(&visitor, lang, "/"), lang)?,
        cookie,
    )
}

async fn signup_submit(
    (visitor, lang, form, logins): AccountPost,
) -> Result<HttpResponse, ApiError> {
    let (store, auth) = (&logins.store, &logins.auth);
    if !visitor.tenant.signup {
        return signup_closed(visitor, &lang, store, auth).await;
    }
    let form = form.into_inner();
    let s = lang.lang.strings();
    let username = form.username.trim().to_string();
    let mut page = SignupPage::new(Chrome::new(&visitor, &lang, "/"), username.clone());
    if visitor.check_csrf(Some(&form.csrf_token)).is_err() {
        return form_expired(visitor, &lang, store, auth, page).await;
    }
    let name = Username::parse(&username);
    page.username_error = match (&name, username.is_empty()) {
        (_, true) => Some(s.err_required),
        (Err(_), _) => Some(s.err_username_invalid),
        _ => None,
    };
    let chars = form.password.chars().count();
    page.password_error = if chars < MIN_PASSWORD_CHARS {
        Some(s.err_password_short)
    } else if chars > MAX_PASSWORD_CHARS {
        Some(s.err_password_long)
    } else {
        None
    };
    let Ok(name) = name else {
        return render_in(&lang, StatusCode::UNPROCESSABLE_ENTITY, page);
    };
    if page.password_error.is_some() {
        return render_in(&lang, StatusCode::UNPROCESSABLE_ENTITY, page);
    }
    // Sign-ups count against the same per-address budget as failed logins.
    if logins
        .limiter
        .charge_address(&client_key(&logins.req).to_string())
        .is_err()
    {
        page.form_error = Some(s.err_rate_limited);
        return render_in(&lang, StatusCode::TOO_MANY_REQUESTS, page);
    }
    let hash = match hash_new_password(auth, form.password).await {
        Ok(hash) => hash,
        Err(ApiError::Client {
            code: Code::Unavailable,
            ..
        }) => {
            page.form_error = Some(s.err_rate_limited);
            return render_in(&lang, StatusCode::SERVICE_UNAVAILABLE, page);
        }
        Err(e) => return Err(e),
    };
    let Some(user) = store
        .create_user(&visitor.tenant.slug, &name, &hash, Role::Viewer)
        .await?
    else {
        page.username_error = Some(s.err_username_taken);
        return render_in(&lang, StatusCode::CONFLICT, page);
    };
    sign_in(&visitor, store, auth, user, "/").await
}

async fn logout(
    visitor: Visitor,
    lang: PageLang,
    form: web::Form<CsrfForm>,
    store: web::Data<Store>,
    auth: web::Data<AuthConfig>,
    hub: web::Data<Hub>,
) -> Result<HttpResponse, ApiError> {
    let Some(session) = visitor.session.as_ref().filter(|s| s.user.is_some()) else {
        return Ok(see_other("/"));
    };
    if visitor.check_csrf(Some(&form.csrf_token)).is_err() {
        let c = Chrome::new(&visitor, &lang, "/");
        return forbidden_page(c, &lang, |s| s.err_form_expired);
    }
    end_session(&visitor, &store, &hub, session).await?;
    with_cookie(see_other("/"), Some(auth.removal_cookie()))
}
