"""What a dataset holds, for people: ``html`` writes the self-contained HTML page of
``wandata report``. Nothing is imported here, so that reading one module of this folder does
not load the video and image libraries the page needs."""
