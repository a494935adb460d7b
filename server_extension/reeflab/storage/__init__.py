"""Storage: the platform's own S3 server (SeaweedFS) and each user's storage connections (S3, WebDAV)."""
