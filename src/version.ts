/** The runtime's version, as the services framework and the OpenAPI document report it. */
export const VERSION = '0.1.0';
