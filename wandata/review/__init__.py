"""``wandata review``: a local web page to watch every clip, reject bad ones and fix captions.

``store.py`` reads the manifest and the review journal (``wandata.dataset.review``) and answers
the page's list, filter and sort queries; ``media.py`` makes and caches posters and frame strips
inside the dataset; ``app.py`` is the Flask application (templates/ and static/ beside it).
The command (``wandata.cli.review``) serves it with werkzeug's threaded server.
"""
