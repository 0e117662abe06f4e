"""Error pages: readable, in the app's layout, never a stack trace."""

from flask import render_template
from flask_wtf.csrf import CSRFError

MESSAGES = {
    403: ("Not allowed", "You are not allowed to do that."),
    404: ("Not found", "There is nothing at this address. It may have been deleted."),
    405: ("Not allowed", "This address does not accept that kind of request."),
    500: ("Something went wrong", "The server hit an error. Nothing was changed; try again."),
}


def render_error(code, title=None, message=None):
    default_title, default_message = MESSAGES.get(code, ("Error", "The request failed."))
    return render_template(
        "errors/error.html", title=title or default_title, message=message or default_message
    ), code


def init_app(app):
    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        # 403, as for any request the app refuses to act on; the page says how to recover.
        return render_error(
            403,
            "Form expired",
            "This form was not accepted because its security token is missing or expired. "
            "Reload the page and try again.",
        )

    for code in MESSAGES:
        app.register_error_handler(code, lambda exc, code=code: render_error(code))
