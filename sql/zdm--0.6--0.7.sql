/* zdm--0.6--0.7.sql: the operation engine (deferred steps, index and constraint operations) */

\echo Use "ALTER EXTENSION zdm UPDATE TO '0.7'" to load this file. \quit
