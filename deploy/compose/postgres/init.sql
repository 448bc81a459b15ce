-- One database and owner per service, created on the first start of the compose PostgreSQL.
-- Local development credentials only; Kubernetes takes the URLs from Secrets.
CREATE ROLE user_service LOGIN PASSWORD 'user_service';
CREATE DATABASE user_service OWNER user_service;
CREATE ROLE order_service LOGIN PASSWORD 'order_service';
CREATE DATABASE order_service OWNER order_service;
CREATE ROLE notification_service LOGIN PASSWORD 'notification_service';
CREATE DATABASE notification_service OWNER notification_service;
