import { PACKAGE } from './project.js';

/** The runtime's version (package.json's), as the services framework and the OpenAPI document report it. */
export const VERSION: string = PACKAGE.version;
