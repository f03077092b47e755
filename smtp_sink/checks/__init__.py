"""The message checks of the API, as Mailpit has them: HTML support in email clients
(:mod:`.html_check`, caniemail.com's data), link status (:mod:`.link_check`) and SpamAssassin
(:mod:`.spam_check`). No aiohttp server code here: the routes are in :mod:`smtp_sink.web.checks`."""
