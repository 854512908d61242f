"""The built-in nginx image serves what a pod mounts under its document root, and only that."""

from skiff.images.nginx import HTML_ROOT, mounted_path, mounts_under, serve_file

MOUNTINFO = """\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
80 22 0:50 / /usr/share/nginx/html ro,relatime - tmpfs none rw
81 22 0:51 / /usr/share/nginx/html2 rw - tmpfs none rw
82 22 0:52 / /srv/with\\040space rw - tmpfs none rw
"""


def test_only_mount_points_at_or_under_the_root_count():
    assert mounts_under(HTML_ROOT, MOUNTINFO) == ["/usr/share/nginx/html"]
    assert mounts_under("/srv/with space", MOUNTINFO) == ["/srv/with space"]
    assert mounts_under(HTML_ROOT, "22 1 254:1 / / rw - ext4 /dev/vda rw\n") == []


def test_a_mounted_root_serves_every_path_and_dot_dot_stays_inside():
    mounts = [HTML_ROOT]
    assert mounted_path(HTML_ROOT, mounts, "/") == HTML_ROOT
    assert mounted_path(HTML_ROOT, mounts, "/a/b.css") == HTML_ROOT + "/a/b.css"
    assert mounted_path(HTML_ROOT, mounts, "/../../etc/passwd") == HTML_ROOT + "/etc/passwd"
    assert mounted_path(HTML_ROOT, mounts, "/docs/") == HTML_ROOT + "/docs/"


def test_a_file_mounted_by_subpath_serves_that_file_only():
    mounts = [HTML_ROOT + "/index.html"]
    assert mounted_path(HTML_ROOT, mounts, "/index.html") == HTML_ROOT + "/index.html"
    assert mounted_path(HTML_ROOT, mounts, "/50x.html") is None  # the image's own page
    assert mounted_path(HTML_ROOT, [], "/index.html") is None


def test_files_directories_and_missing_paths_answer_as_nginx(tmp_path):
    (tmp_path / "index.html").write_text("<h1>from a ConfigMap</h1>")
    (tmp_path / "docs").mkdir()
    (tmp_path / "style.css").write_text("h1 {}")
    status, body, ctype, headers = serve_file(str(tmp_path), "/")
    assert (status, body, ctype) == (200, b"<h1>from a ConfigMap</h1>", "text/html")
    assert serve_file(str(tmp_path / "style.css"), "/style.css")[2] == "text/css"
    assert serve_file(str(tmp_path / "docs"), "/docs")[::3] == (301, [("Location", "/docs/")])
    assert serve_file(str(tmp_path / "docs"), "/docs/")[0] == 403  # no index, no autoindex
    assert serve_file(str(tmp_path / "nope.html"), "/nope.html")[0] == 404
